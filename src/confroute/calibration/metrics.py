"""Calibration and selective-prediction metrics.

Two families, both over plain numpy arrays:

* **Calibration** of a probability matrix against true labels: expected and maximum calibration
  error (:func:`expected_calibration_error`, :func:`maximum_calibration_error`), the
  :func:`reliability_table` behind them, the Brier score and the negative log-likelihood.
  ECE and MCE are *top-label* metrics: they bin the largest class probability of each row
  (the confidence) and compare it with whether the arg-max label is right (Guo et al. 2017).
* **Selective prediction** of a confidence score against per-input correctness: coverage and
  selective accuracy/risk at a threshold, the whole risk-coverage curve, AURC and E-AURC
  (Geifman & El-Yaniv 2017; Geifman et al. 2019).

Conventions used throughout
---------------------------
* An input is **accepted** at threshold ``t`` when ``score >= t`` (as everywhere in confroute).
* **Coverage** is the share of inputs accepted; **selective risk** is the error rate among the
  accepted inputs and **selective accuracy** is one minus it. Both are ``nan`` when nothing is
  accepted, because an empty set has no accuracy.
* The true labels are column indices ``label_index`` in ``0 .. k-1`` (column positions of
  ``probs``), not class values; ``labels=`` is the deprecated name of that keyword.

References
----------
Guo, Pleiss, Sun & Weinberger (2017). On calibration of modern neural networks. ICML.
Naeini, Cooper & Hauskrecht (2015). Obtaining well calibrated probabilities using Bayesian
binning. AAAI (ECE/MCE).
Nixon et al. (2019). Measuring calibration in deep learning. CVPR workshops (equal-mass bins).
Brier (1950). Verification of forecasts expressed in terms of probability. Monthly Weather Review.
Geifman & El-Yaniv (2017). Selective classification for deep neural networks. NeurIPS.
Geifman, Uziel & El-Yaniv (2019). Bias-reduced uncertainty estimation for deep neural
classifiers. ICLR (AURC, E-AURC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..core import decision
from ..core._deprecation import renamed_keyword
from ..core._json import json_float
from ..core._optional import import_pandas

__all__ = [
    "expected_calibration_error",
    "ece",
    "maximum_calibration_error",
    "mce",
    "brier_score",
    "negative_log_likelihood",
    "nll",
    "reliability_table",
    "ReliabilityTable",
    "calibration_bins",
    "top_label",
    "coverage_at",
    "selective_accuracy",
    "selective_risk",
    "risk_coverage_curve",
    "RiskCoverageCurve",
    "aurc",
    "eaurc",
    "optimal_aurc",
    "aurc_sorted",
    "check_scores",
    "check_correct",
]

#: Probabilities are clipped to at least this before taking logs in the NLL, so a confidently
#: wrong zero does not turn the mean into infinity (the same floor scikit-learn's log_loss used).
NLL_EPS = 1e-15

_STRATEGIES = {
    "uniform": "uniform",
    "equal_width": "uniform",
    "width": "uniform",
    "quantile": "quantile",
    "equal_mass": "quantile",
    "mass": "quantile",
}


# --------------------------------------------------------------------------- input checking
def _check_probs(probs: Any, name: str = "probs") -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{name} must have shape (n_inputs, n_classes >= 2), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contains non-finite values")
    if ((p < -1e-6) | (p > 1 + 1e-6)).any():
        raise ValueError(f"{name} has values outside [0, 1]; pass probabilities, not logits")
    return p


def _check_labels(labels: Any, n: int, k: int | None = None, where: str = "") -> np.ndarray:
    """``n`` class indices (integer-valued floats accepted), in ``0..k-1`` when ``k`` is given;
    ``where`` prefixes the error messages."""
    at = f"{where}: " if where else ""
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"{at}labels must have shape ({n},), got {y.shape}")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(
                f"{at}labels must be class indices (integers), got dtype {y.dtype}; map class names "
                "to column positions first"
            )
    y = y.astype(np.int64)
    if k is not None and n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"{at}labels must lie in 0..{k - 1}, got values in {int(y.min())}..{int(y.max())}")
    return y


def check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """``scores`` as a 1-D float array; NaN is an error naming its first position."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {s.shape}")
    bad = np.flatnonzero(np.isnan(s))
    if bad.size:
        raise ValueError(f"{name} is NaN at index {int(bad[0])} ({bad.size} NaN values)")
    return s


def check_correct(correct: Any, n: int, name: str = "correct") -> np.ndarray:
    """``correct`` as a boolean array of shape ``(n,)`` (0/1 accepted)."""
    c = np.asarray(correct)
    if c.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {c.shape}")
    if c.dtype != bool:
        if not np.isin(c, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1), got other values")
        c = c.astype(bool)
    return c


@renamed_keyword("labels", "label_index")
def top_label(probs: Any, label_index: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confidence (largest probability) and correctness of the arg-max label, per row.

    Examples
    --------
    >>> conf, correct = top_label([[0.8, 0.2], [0.3, 0.7]], [0, 0])
    >>> conf.tolist(), correct.tolist()
    ([0.8, 0.7], [True, False])
    """
    p = _check_probs(probs)
    y = _check_labels(label_index, p.shape[0], p.shape[1])
    return p.max(axis=1), p.argmax(axis=1) == y


# --------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class ReliabilityTable:
    """Per-bin calibration statistics (one entry per bin, empty bins included).

    Attributes
    ----------
    lower, upper : ndarray
        Bin edges; a bin holds confidences in ``(lower, upper]`` (the first bin also holds
        ``lower`` itself).
    count : ndarray of int
        Inputs in the bin.
    confidence : ndarray
        Mean confidence in the bin (``nan`` when empty).
    accuracy : ndarray
        Share of correct answers in the bin (``nan`` when empty).
    strategy : str
        ``"uniform"`` (equal-width bins) or ``"quantile"`` (equal-mass bins).
    """

    lower: np.ndarray
    upper: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    strategy: str

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def gap(self) -> np.ndarray:
        """``accuracy - confidence`` per bin (negative: over-confident)."""
        return self.accuracy - self.confidence

    @property
    def ece(self) -> float:
        """Count-weighted mean of ``|gap|`` over non-empty bins."""
        full = self.count > 0
        if not full.any():
            return float("nan")
        return float(np.sum(self.count[full] * np.abs(self.gap[full])) / self.count.sum())

    @property
    def mce(self) -> float:
        """Largest ``|gap|`` over non-empty bins."""
        full = self.count > 0
        return float(np.max(np.abs(self.gap[full]))) if full.any() else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable columns (``None`` for empty bins)."""
        def col(a: np.ndarray) -> list[Any]:
            return [json_float(v) for v in a]

        return {
            "strategy": self.strategy,
            "lower": col(self.lower),
            "upper": col(self.upper),
            "count": [int(c) for c in self.count],
            "confidence": col(self.confidence),
            "accuracy": col(self.accuracy),
            "ece": self.ece,
            "mce": self.mce,
        }

    def to_pandas(self) -> Any:
        """One row per bin (requires pandas)."""
        pd = import_pandas()
        return pd.DataFrame(
            {
                "lower": self.lower,
                "upper": self.upper,
                "count": self.count,
                "confidence": self.confidence,
                "accuracy": self.accuracy,
                "gap": self.gap,
            }
        )

    def __repr__(self) -> str:
        lines = [f"ReliabilityTable({self.strategy}, {len(self.count)} bins, n={self.n}, "
                 f"ECE={self.ece:.4f}, MCE={self.mce:.4f})",
                 "       bin        count   conf    acc"]
        for lo, hi, c, cf, ac in zip(self.lower, self.upper, self.count, self.confidence, self.accuracy):
            if c:
                lines.append(f"  ({lo:.3f}, {hi:.3f}]  {c:>7}  {cf:.3f}  {ac:.3f}")
        return "\n".join(lines)


def calibration_bins(
    confidence: Any, correct: Any, n_bins: int = 15, strategy: str = "uniform"
) -> ReliabilityTable:
    """Bin confidences and compare each bin's mean confidence with its accuracy.

    The building block of :func:`reliability_table`, :func:`expected_calibration_error` and
    :func:`maximum_calibration_error`, for when you already have one confidence per input.

    Parameters
    ----------
    confidence : array of shape (n,)
        Values in ``[0, 1]``.
    correct : array of bool, shape (n,)
    n_bins : int, default 15
    strategy : {"uniform", "quantile"}, default "uniform"
        ``"uniform"`` (alias ``"equal_width"``): bin ``b`` is ``(b/B, (b+1)/B]``, the first bin
        also holding 0, as in Guo et al. 2017. ``"quantile"`` (alias ``"equal_mass"``): edges at
        the ``b/B`` quantiles of the confidences, so bins hold about ``n/B`` inputs each (Nixon et
        al. 2019); tied confidences always share a bin, so with many ties some bins are empty.

    Returns
    -------
    ReliabilityTable

    Examples
    --------
    >>> t = calibration_bins([0.1, 0.6, 0.7, 0.95], [False, True, False, True], n_bins=2)
    >>> t.count.tolist(), t.accuracy.tolist()
    ([1, 3], [0.0, 0.6666666666666666])
    """
    conf = check_scores(confidence, "confidence")
    corr = check_correct(correct, conf.shape[0])
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    try:
        strat = _STRATEGIES[strategy]
    except KeyError:
        raise ValueError(f"unknown binning strategy {strategy!r}; use 'uniform' or 'quantile'") from None
    if conf.size and (conf.min() < -1e-9 or conf.max() > 1 + 1e-9):
        raise ValueError("confidence values must lie in [0, 1]")
    conf = np.clip(conf, 0.0, 1.0)
    if strat == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif conf.size:
        edges = np.quantile(conf, np.linspace(0.0, 1.0, n_bins + 1))
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins: searchsorted(side="left") on the inner edges puts a value equal to an
    # edge into the bin that edge closes.
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(idx, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_corr = np.bincount(idx, weights=corr.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, sum_conf / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, sum_corr / np.maximum(count, 1), np.nan)
    return ReliabilityTable(edges[:-1].copy(), edges[1:].copy(), count, mean_conf, acc, strat)


@renamed_keyword("labels", "label_index")
def reliability_table(
    probs: Any, label_index: Any, n_bins: int = 15, strategy: str = "uniform"
) -> ReliabilityTable:
    """Top-label reliability table: per confidence bin, count, mean confidence and accuracy.

    Parameters
    ----------
    probs : array of shape (n, k)
        Class probabilities.
    label_index : array of int, shape (n,)
        The true labels as column indices of ``probs``.
    n_bins, strategy
        See :func:`calibration_bins`.

    Returns
    -------
    ReliabilityTable

    Examples
    --------
    >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]]
    >>> t = reliability_table(probs, [0, 1, 1, 1], n_bins=5)
    >>> t.count.tolist()
    [0, 0, 1, 2, 1]
    >>> [round(float(a), 3) for a in t.accuracy[2:]]
    [1.0, 0.5, 1.0]
    """
    conf, correct = top_label(probs, label_index)
    return calibration_bins(conf, correct, n_bins=n_bins, strategy=strategy)


@renamed_keyword("labels", "label_index")
def expected_calibration_error(
    probs: Any, label_index: Any, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """Expected calibration error of the top label (Naeini et al. 2015; Guo et al. 2017).

    ``ECE = sum_b (n_b / n) * |acc_b - conf_b|`` over non-empty bins of the largest class
    probability. Default: 15 equal-width bins, as in Guo et al. 2017; ``strategy="quantile"``
    gives equal-mass bins.

    Parameters
    ----------
    probs : array of shape (n, k)
    label_index : array of int, shape (n,)
        The true labels as column indices of ``probs``.
    n_bins : int, default 15
    strategy : {"uniform", "quantile"}, default "uniform"

    Returns
    -------
    float
        In ``[0, 1]``; ``nan`` for zero inputs.

    Examples
    --------
    Confidences 0.9, 0.8 (right, wrong) fall in the bin (0.75, 1] and 0.6, 0.7 (both right)
    in (0.5, 0.75] with four bins: ``0.5 * |0.5 - 0.85| + 0.5 * |1 - 0.65| = 0.35``.

    >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]]
    >>> round(expected_calibration_error(probs, [0, 1, 1, 1], n_bins=4), 6)
    0.35
    """
    return reliability_table(probs, label_index, n_bins, strategy).ece


#: Short alias of :func:`expected_calibration_error`.
ece = expected_calibration_error


@renamed_keyword("labels", "label_index")
def maximum_calibration_error(
    probs: Any, label_index: Any, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """Maximum calibration error: the largest ``|acc_b - conf_b|`` over non-empty bins.

    Examples
    --------
    >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.4, 0.6]]
    >>> round(maximum_calibration_error(probs, [0, 1, 1, 1], n_bins=4), 6)  # max(|0.5 - 0.85|, |1 - 0.6|)
    0.4
    """
    return reliability_table(probs, label_index, n_bins, strategy).mce


#: Short alias of :func:`maximum_calibration_error`.
mce = maximum_calibration_error


@renamed_keyword("labels", "label_index")
def brier_score(probs: Any, label_index: Any) -> float:
    """Multi-class Brier score: mean over inputs of ``sum_k (p_k - [y == k])**2`` (Brier 1950).

    Ranges over ``[0, 2]``. For two classes it is twice the "binary" Brier score of the positive
    class that scikit-learn's ``brier_score_loss`` reports.

    Examples
    --------
    >>> round(brier_score([[0.8, 0.2], [0.4, 0.6]], [0, 0]), 6)  # (0.04+0.04 + 0.36+0.36) / 2
    0.4
    """
    p = _check_probs(probs)
    y = _check_labels(label_index, p.shape[0], p.shape[1])
    if not len(y):
        return float("nan")
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


@renamed_keyword("labels", "label_index")
def negative_log_likelihood(probs: Any, label_index: Any) -> float:
    """Mean negative log-probability of the true class (natural log).

    Probabilities are floored at ``1e-15`` (:data:`NLL_EPS`) so one confidently wrong zero gives
    a large but finite penalty (34.5) rather than infinity.

    Examples
    --------
    >>> round(negative_log_likelihood([[0.5, 0.5], [0.9, 0.1]], [0, 0]), 6)  # (ln 2 + ln(1/0.9)) / 2
    0.399254
    """
    p = _check_probs(probs)
    y = _check_labels(label_index, p.shape[0], p.shape[1])
    if not len(y):
        return float("nan")
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], NLL_EPS, None))))


#: Short alias of :func:`negative_log_likelihood`.
nll = negative_log_likelihood


# --------------------------------------------------------------------------- selective
def coverage_at(scores: Any, threshold: float) -> float:
    """Share of inputs accepted at ``threshold`` (``score >= threshold``).

    Examples
    --------
    >>> coverage_at([0.2, 0.5, 0.9, 0.5], 0.5)
    0.75
    """
    s = check_scores(scores)
    return float(np.mean(decision.accepts(s, None, threshold))) if s.size else float("nan")


def selective_accuracy(scores: Any, correct: Any, threshold: float) -> float:
    """Accuracy on the inputs accepted at ``threshold``; ``nan`` when none is accepted.

    Examples
    --------
    >>> selective_accuracy([0.2, 0.5, 0.9, 0.5], [False, True, True, False], 0.5)
    0.6666666666666666
    """
    s = check_scores(scores)
    c = check_correct(correct, s.shape[0])
    accepted = decision.accepts(s, None, threshold)
    return float(c[accepted].mean()) if accepted.any() else float("nan")


def selective_risk(scores: Any, correct: Any, threshold: float) -> float:
    """Error rate on the inputs accepted at ``threshold``; ``nan`` when none is accepted.

    Examples
    --------
    >>> selective_risk([0.2, 0.5, 0.9, 0.5], [False, True, True, False], 0.9)
    0.0
    """
    return 1.0 - selective_accuracy(scores, correct, threshold)


class RiskCoverageCurve(NamedTuple):
    """The risk-coverage curve at every distinct threshold, from strictest to loosest."""

    coverage: np.ndarray
    risk: np.ndarray
    thresholds: np.ndarray


def risk_coverage_curve(scores: Any, correct: Any) -> RiskCoverageCurve:
    """Selective risk and coverage at every distinct score used as the threshold.

    Thresholds are the distinct scores in decreasing order, so coverage increases; tied scores
    are accepted together and give one point. Computed with one sort and cumulative sums,
    O(n log n).

    Returns
    -------
    RiskCoverageCurve
        ``(coverage, risk, thresholds)``, each of length "number of distinct scores".

    Examples
    --------
    >>> c = risk_coverage_curve([0.9, 0.8, 0.8, 0.3], [True, False, True, False])
    >>> c.thresholds.tolist(), c.coverage.tolist(), c.risk.round(4).tolist()
    ([0.9, 0.8, 0.3], [0.25, 0.75, 1.0], [0.0, 0.3333, 0.5])
    """
    s = check_scores(scores)
    c = check_correct(correct, s.shape[0])
    if not s.size:
        empty = np.empty(0)
        return RiskCoverageCurve(empty, empty, empty)
    thresholds, order, ends = decision.threshold_path(s)
    accepted = ends[1:]  # row 0 of the path accepts nothing: no risk there
    errors = np.r_[0, np.cumsum(~c[order])][accepted]
    return RiskCoverageCurve(accepted / s.size, errors / accepted, thresholds[1:])


def aurc(scores: Any, correct: Any) -> float:
    """Area under the risk-coverage curve (Geifman et al. 2019); lower is better.

    Convention: sort inputs by decreasing score and average the selective risk over the ``n``
    coverage points ``1/n, 2/n, ..., 1``: ``AURC = (1/n) sum_m errors(top m) / m``. Within a
    group of tied scores the order is undefined, so the error count inside the group is taken at
    its expectation over all orders (it grows linearly across the group); the result does not
    depend on input order and equals the textbook value when scores are distinct.

    Examples
    --------
    Errors on the 2nd and 4th most confident of four inputs:
    ``(0/1 + 1/2 + 1/3 + 2/4) / 4 = 1/3``.

    >>> round(aurc([0.9, 0.8, 0.7, 0.6], [True, False, True, False]), 6)
    0.333333
    """
    s = check_scores(scores)
    c = check_correct(correct, s.shape[0])
    if not s.size:
        return float("nan")
    _, order, _ = decision.threshold_path(s)
    return aurc_sorted(s[order], ~c[order])


def aurc_sorted(s_sorted: np.ndarray, wrong_sorted: np.ndarray, ends: np.ndarray | None = None) -> float:
    """AURC from scores sorted in decreasing order and the matching error flags.

    Tied scores are the groups of :func:`confroute.core.decision.threshold_path`; pass its
    ``ends`` when the caller already walked the path (it saves a sort).
    """
    n = s_sorted.size
    err = wrong_sorted.astype(np.float64)
    path_ends = decision.threshold_path(s_sorted)[2] if ends is None else np.asarray(ends)
    ends = path_ends[1:] - 1  # last position of each group of tied scores
    if ends.size == n:  # no ties: the textbook sum
        return float(np.mean(np.cumsum(err) / np.arange(1, n + 1)))
    starts = np.r_[0, ends[:-1] + 1]
    group_err = np.add.reduceat(err, starts)
    group_size = ends - starts + 1
    before = np.cumsum(group_err) - group_err  # errors in strictly more confident groups
    # Position j (1-based) inside a group of size g with e errors expects before + j*e/g errors.
    gid = np.repeat(np.arange(ends.size), group_size)
    j = np.arange(n) - starts[gid] + 1
    expected_err = before[gid] + j * group_err[gid] / group_size[gid]
    return float(np.mean(expected_err / np.arange(1, n + 1)))


def optimal_aurc(n: int, n_errors: int, exact: bool = True) -> float:
    """AURC of a perfect ranking (all correct inputs first) of ``n`` inputs with ``n_errors`` errors.

    ``exact=True`` gives the finite-sample value ``(1/n) sum_{m > C} (m - C) / m`` with
    ``C = n - n_errors`` correct inputs. ``exact=False`` gives its large-``n`` limit
    ``r + (1 - r) ln(1 - r)`` with ``r = n_errors / n``, the formula of Geifman et al. 2019.

    Examples
    --------
    >>> round(optimal_aurc(4, 2), 6)  # (1/3 + 2/4) / 4
    0.208333
    >>> round(optimal_aurc(4, 2, exact=False), 6)  # 0.5 + 0.5 ln 0.5
    0.153426
    """
    if n <= 0:
        return float("nan")
    if not 0 <= n_errors <= n:
        raise ValueError(f"n_errors must lie in 0..{n}, got {n_errors}")
    if not exact:
        r = n_errors / n
        return float(r + (1 - r) * np.log1p(-r)) if r < 1 else 1.0
    n_correct = n - n_errors
    m = np.arange(n_correct + 1, n + 1, dtype=np.float64)
    return float(np.sum((m - n_correct) / m) / n)


def eaurc(scores: Any, correct: Any, exact: bool = True) -> float:
    """Excess AURC: :func:`aurc` minus the AURC of a perfect ranking with the same errors.

    ``E-AURC = AURC - AURC*`` (Geifman et al. 2019) isolates how well the score *ranks* inputs
    from how accurate the model is. ``AURC*`` is computed exactly for the sample at hand by
    default (so E-AURC is never negative); ``exact=False`` uses the paper's large-sample formula
    ``r + (1 - r) ln(1 - r)`` (see :func:`optimal_aurc`); the two differ by ``O(log(n) / n)``.

    Examples
    --------
    >>> round(eaurc([0.9, 0.8, 0.7, 0.6], [True, False, True, False]), 6)  # 1/3 - 5/24
    0.125
    >>> eaurc([0.9, 0.8, 0.7, 0.6], [True, True, False, False])
    0.0
    """
    s = check_scores(scores)
    c = check_correct(correct, s.shape[0])
    if not s.size:
        return float("nan")
    return aurc(s, c) - optimal_aurc(s.size, int((~c).sum()), exact=exact)
