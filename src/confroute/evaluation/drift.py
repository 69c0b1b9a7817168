"""Drift monitoring: notice when live traffic no longer looks like the calibration data.

A threshold is chosen on calibration data; its guarantee holds for data from the same
distribution. When inputs drift (new topics, a new client, a changed upstream model), the
primary's score distribution moves, the share of inputs routed to the fallback moves with it,
and the accuracy and cost figures chosen on calibration data no longer hold. Labels arrive late
or never in production, but scores and routing decisions are free, so :class:`DriftMonitor`
watches those:

* **Routed fraction.** The share of live inputs with ``score < threshold`` against the share at
  calibration. By default a two-sample test of proportions (pooled z-test), because the
  calibration share is itself an estimate; ``rate_test="binomial"`` treats it as exact
  (``scipy.stats.binomtest``). It flags when the test rejects at ``rate_alpha`` *and* the shares
  differ by more than ``rate_tolerance`` (so a huge window does not flag a 0.1-point change).
* **Population stability index** of the score distribution over ``n_bins`` quantile bins of the
  calibration scores: ``PSI = sum_i (a_i - e_i) ln(a_i / e_i)`` with ``e_i``, ``a_i`` the
  calibration and live shares of bin ``i`` (each count gets +0.5 so an empty bin does not make it
  infinite). Rule of thumb from credit scoring (Siddiqi 2006; Yurdakul 2018): below 0.1 no
  real change, 0.1-0.25 a moderate shift worth watching, above 0.25 a significant one. The
  default alert at 0.2 sits inside the moderate band, a common choice in model monitoring, since
  a routing threshold's accuracy guarantee degrades before the shift is "significant".
  PSI is an effect size: it does not grow with the sample, but it is noisy on small windows
  (under no drift its expected value is about ``(n_bins - 1) (1/n_live + 1/n_cal)``, from its
  chi-square approximation).
* **Kolmogorov–Smirnov** two-sample test of the score distributions (``scipy.stats.ks_2samp``):
  sensitive to any change, so with large windows it flags shifts too small to matter; it is
  reported and flagged at ``ks_alpha`` but, by default, does not by itself make recalibration
  due (``due_on`` chooses which flags do).

Failing loudly on dataset shift with such two-sample tests on a model's outputs is studied by
Rabanser, Günnemann & Lipton (2019).

References
----------
Siddiqi (2006). Credit Risk Scorecards. Wiley (PSI thresholds 0.1 / 0.25).
Yurdakul (2018). Statistical properties of the population stability index. PhD thesis, Western
Michigan University.
Massey (1951). The Kolmogorov-Smirnov test for goodness of fit. JASA.
Rabanser, Günnemann & Lipton (2019). Failing loudly: an empirical study of methods for detecting
dataset shift. NeurIPS.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator

from ..core import decision
from ..core._deprecation import renamed_keyword
from ..core._json import json_float
from ..core._params import Interval, check_param
from ..core.choice import stage_thresholds
from ..core.estimators import check_is_fitted

__all__ = ["DriftMonitor", "DriftReport", "population_stability_index"]

_FLAGS = ("psi", "rate", "ks")


#: Declared ranges of the monitor's settings, checked by :meth:`DriftMonitor.fit`.
_RANGES = {
    "psi_alert": Interval(0.0, float("inf"), "neither"),
    "ks_alpha": Interval(0.0, 1.0, "neither"),
    "rate_alpha": Interval(0.0, 1.0, "neither"),
    "rate_tolerance": Interval(0.0, 1.0, "both"),
}


def _bin_counts(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, scores, side="right"), minlength=edges.size + 1)


def population_stability_index(expected: Any, actual: Any, n_bins: int = 10) -> float:
    """PSI of ``actual`` against ``expected`` over quantile bins of ``expected``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(0, 1, 5000)
    >>> round(population_stability_index(ref, rng.normal(0, 1, 5000)), 3)  # no drift: ~9 x 2/5000
    0.005
    >>> round(population_stability_index(ref, rng.normal(0.5, 1, 5000)), 2)
    0.25
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    edges = _edges(e, n_bins)
    return float(_psi(_bin_counts(e, edges), _bin_counts(a, edges)))


def _edges(reference: np.ndarray, n_bins: int) -> np.ndarray:
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    # Inner edges at the reference quantiles; tied scores (many 1.0s) merge bins.
    return np.unique(np.quantile(reference, np.arange(1, n_bins) / n_bins))


def _psi(expected_counts: np.ndarray, actual_counts: np.ndarray) -> float:
    e = (expected_counts + 0.5) / (expected_counts.sum() + 0.5 * expected_counts.size)
    a = (actual_counts + 0.5) / (actual_counts.sum() + 0.5 * actual_counts.size)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReport:
    """What :meth:`DriftMonitor.check` found on a batch (or window) of live scores.

    Attributes
    ----------
    n : int
        Live scores examined.
    enough_data : bool
        At least ``min_samples`` live scores; flags are all False otherwise.
    psi : float
    psi_flag : bool
        ``psi > psi_alert``.
    ks_statistic, ks_pvalue : float
    ks_flag : bool
        ``ks_pvalue < ks_alpha``.
    routed_fraction, reference_routed_fraction : float or None
        Share with ``score < threshold`` live and at calibration (``None`` without a threshold).
    rate_pvalue : float or None
    rate_flag : bool
        The test rejects at ``rate_alpha`` and the shares differ by more than ``rate_tolerance``.
    recalibration_due : bool
        Any of the flags named in the monitor's ``due_on`` is raised.
    reasons : list of str
        One sentence per raised flag.
    bins : dict
        ``edges`` (inner bin edges), ``expected`` and ``actual`` shares per bin.
    """

    n: int
    enough_data: bool
    psi: float
    psi_flag: bool
    ks_statistic: float
    ks_pvalue: float
    ks_flag: bool
    routed_fraction: float | None
    reference_routed_fraction: float | None
    rate_pvalue: float | None
    rate_flag: bool
    recalibration_due: bool
    reasons: list[str] = field(default_factory=list)
    bins: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: json_float(v) if isinstance(v, float) else v for k, v in self.__dict__.items()}

    def __str__(self) -> str:
        state = "RECALIBRATION DUE" if self.recalibration_due else "ok"
        if not self.enough_data:
            state = "not enough data"
        rate = ""
        if self.routed_fraction is not None:
            rate = (f"; routed {self.routed_fraction:.1%} vs {self.reference_routed_fraction:.1%} "
                    f"(p={self.rate_pvalue:.3g})")
        text = (f"drift check on {self.n} scores: {state}. PSI {self.psi:.3f}; "
                f"KS {self.ks_statistic:.3f} (p={self.ks_pvalue:.3g}){rate}")
        return text + "".join(f"\n  - {r}" for r in self.reasons)


class DriftMonitor(BaseEstimator):
    """Compare live scores (and routed fraction) with those seen at calibration.

    Parameters
    ----------
    threshold : float or array, optional
        The router's threshold (an array: per predicted class, then pass each score's predicted
        column, ``predicted_label_index``, to :meth:`fit` and :meth:`check`), or a threshold
        choice (its first stage's threshold). Without it, only the score distribution is watched.
    n_bins : int, default 10
        Quantile bins of the calibration scores for PSI.
    psi_alert : float, default 0.2
    ks_alpha : float, default 0.01
    rate_alpha : float, default 0.01
    rate_tolerance : float, default 0.02
        Smallest change in routed fraction (absolute) worth flagging.
    rate_test : {"two_sample", "binomial"}, default "two_sample"
    due_on : tuple of str, default ("psi", "rate")
        Flags that make recalibration due; any of ``"psi"``, ``"rate"``, ``"ks"``.
    window : int, default 5000
        :meth:`update` keeps the last ``window`` live scores.
    min_samples : int, default 200
        Fewer live scores than this raise no flag (PSI and the tests are too noisy).

    Attributes
    ----------
    reference_scores_ : ndarray (sorted)
    edges_ : ndarray
        Inner PSI bin edges.
    reference_counts_ : ndarray
    reference_routed_fraction_ : float or None
    n_reference_ : int

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> monitor = DriftMonitor(threshold=0.8).fit(rng.beta(8, 2, 3000))
    >>> monitor.check(rng.beta(8, 2, 2000)).recalibration_due
    False
    >>> report = monitor.check(rng.beta(5, 2, 2000))  # live inputs got harder
    >>> report.recalibration_due, report.psi_flag, report.rate_flag
    (True, True, True)
    """

    def __init__(
        self,
        threshold: Any = None,
        *,
        n_bins: int = 10,
        psi_alert: float = 0.2,
        ks_alpha: float = 0.01,
        rate_alpha: float = 0.01,
        rate_tolerance: float = 0.02,
        rate_test: str = "two_sample",
        due_on: tuple[str, ...] = ("psi", "rate"),
        window: int = 5000,
        min_samples: int = 200,
    ) -> None:
        self.threshold = threshold
        self.n_bins = n_bins
        self.psi_alert = psi_alert
        self.ks_alpha = ks_alpha
        self.rate_alpha = rate_alpha
        self.rate_tolerance = rate_tolerance
        self.rate_test = rate_test
        self.due_on = due_on
        self.window = window
        self.min_samples = min_samples

    def _routed(self, scores: np.ndarray, label_index: Any) -> np.ndarray | None:
        if self.threshold is None:
            return None
        spec = stage_thresholds(self.threshold, "DriftMonitor threshold")
        if spec is not self.threshold:  # a threshold choice: the first stage's threshold
            spec = spec[0]
        thr = decision.check_threshold(spec, None, "DriftMonitor threshold")
        if isinstance(thr, dict):
            raise ValueError("give DriftMonitor per-class thresholds as an array in column order")
        index = None
        if isinstance(thr, np.ndarray):
            if label_index is None:
                raise ValueError("per-class thresholds need the predicted label index (predicted_label_index, a column) of each score")
            index = np.asarray(label_index, dtype=np.int64)
            if index.shape != scores.shape:
                raise ValueError(f"predicted_label_index must have shape {scores.shape}, got {index.shape}")
        return ~decision.accepts(scores, index, thr)

    @staticmethod
    def _scores(scores: Any) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not np.isfinite(s).all():
            raise ValueError("scores must be finite")
        return s

    @renamed_keyword("predicted_labels", "predicted_label_index")
    def fit(self, scores: Any, predicted_label_index: Any = None) -> DriftMonitor:
        """Record the calibration scores (the ones the threshold was chosen on).

        ``predicted_label_index`` (each score's predicted column) is needed with per-class
        thresholds; ``predicted_labels`` is its deprecated name.
        """
        for name, spec in _RANGES.items():
            check_param(getattr(self, name), name, spec)
        bad = sorted(set(self.due_on) - set(_FLAGS))
        if bad:
            raise ValueError(f"due_on may name {list(_FLAGS)}, got {bad}")
        if self.rate_test not in ("two_sample", "binomial"):
            raise ValueError(f"rate_test must be 'two_sample' or 'binomial', got {self.rate_test!r}")
        s = self._scores(scores)
        if s.size < 2:
            raise ValueError("DriftMonitor.fit needs at least 2 calibration scores")
        self.reference_scores_ = np.sort(s)
        self.edges_ = _edges(s, self.n_bins)
        self.reference_counts_ = _bin_counts(s, self.edges_)
        routed = self._routed(s, predicted_label_index)
        self.reference_routed_fraction_ = None if routed is None else float(routed.mean())
        self.n_reference_ = int(s.size)
        self._live: deque[tuple[float, int]] = deque(maxlen=self.window)
        return self

    def _check_fitted(self) -> None:
        check_is_fitted(self, "reference_scores_")

    @renamed_keyword("predicted_labels", "predicted_label_index")
    def update(self, scores: Any, predicted_label_index: Any = None) -> DriftReport:
        """Add live scores to the rolling window (the last ``window``) and check the window."""
        self._check_fitted()
        s = self._scores(scores)
        index = (np.full(s.size, -1) if predicted_label_index is None
                 else np.asarray(predicted_label_index, dtype=np.int64).reshape(-1))
        if index.shape != s.shape:
            raise ValueError(f"predicted_label_index must have shape {s.shape}, got {index.shape}")
        self._live.extend(zip(s.tolist(), index.tolist()))
        arr = np.array(self._live, dtype=np.float64).reshape(-1, 2)
        unindexed = predicted_label_index is None and bool((arr[:, 1] < 0).all())
        live_index = None if unindexed else arr[:, 1].astype(np.int64)
        return self.check(arr[:, 0], live_index)

    def reset(self) -> None:
        """Forget the live window (after recalibrating, say)."""
        self._check_fitted()
        self._live.clear()

    @renamed_keyword("predicted_labels", "predicted_label_index")
    def check(self, scores: Any, predicted_label_index: Any = None) -> DriftReport:
        """Compare a batch of live scores with the calibration scores."""
        self._check_fitted()
        s = self._scores(scores)
        n = int(s.size)
        enough = n >= self.min_samples
        counts = _bin_counts(s, self.edges_) if n else np.zeros_like(self.reference_counts_)
        psi = _psi(self.reference_counts_, counts) if n else float("nan")
        if n:
            ks = stats.ks_2samp(s, self.reference_scores_)
            ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
        else:
            ks_stat, ks_p = float("nan"), float("nan")
        routed_frac = rate_p = None
        rate_flag = False
        p0 = self.reference_routed_fraction_
        if p0 is not None and n:
            routed = self._routed(s, predicted_label_index)
            assert routed is not None
            k = int(routed.sum())
            routed_frac = k / n
            rate_p = self._rate_pvalue(k, n)
            rate_flag = enough and rate_p < self.rate_alpha and abs(routed_frac - p0) > self.rate_tolerance
        psi_flag = bool(enough and psi > self.psi_alert)
        ks_flag = bool(enough and ks_p < self.ks_alpha)
        flags = {"psi": psi_flag, "rate": bool(rate_flag), "ks": ks_flag}
        reasons = []
        if psi_flag:
            reasons.append(f"score distribution moved: PSI {psi:.3f} > {self.psi_alert}")
        if rate_flag:
            reasons.append(
                f"routed fraction {routed_frac:.1%} vs {p0:.1%} at calibration (p={rate_p:.2g}, "
                f"tolerance {self.rate_tolerance:.1%})"
            )
        if ks_flag:
            reasons.append(f"KS test rejects equal score distributions (D={ks_stat:.3f}, p={ks_p:.2g})")
        ref_share = self.reference_counts_ / self.reference_counts_.sum()
        return DriftReport(
            n=n,
            enough_data=enough,
            psi=psi,
            psi_flag=psi_flag,
            ks_statistic=ks_stat,
            ks_pvalue=ks_p,
            ks_flag=ks_flag,
            routed_fraction=routed_frac,
            reference_routed_fraction=p0,
            rate_pvalue=rate_p,
            rate_flag=bool(rate_flag),
            recalibration_due=any(flags[f] for f in self.due_on),
            reasons=reasons,
            bins={
                "edges": self.edges_.tolist(),
                "expected": ref_share.tolist(),
                "actual": (counts / max(n, 1)).tolist(),
            },
        )

    def _rate_pvalue(self, k: int, n: int) -> float:
        p0 = self.reference_routed_fraction_
        assert p0 is not None
        if self.rate_test == "binomial":
            return float(stats.binomtest(k, n, p0).pvalue)
        # Two-proportion z-test, pooled: the calibration share is an estimate too.
        n0 = self.n_reference_
        k0 = p0 * n0
        pooled = (k + k0) / (n + n0)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / n0))
        if se == 0:
            return 1.0 if k / n == p0 else 0.0
        z = (k / n - p0) / se
        return float(2 * stats.norm.sf(abs(z)))

    def __repr__(self) -> str:
        fitted = f", n_reference={self.n_reference_}" if hasattr(self, "n_reference_") else ""
        return f"DriftMonitor(threshold={self.threshold!r}, psi_alert={self.psi_alert}{fitted})"
