"""Evaluate a router at every threshold at once: :func:`evaluate` and :class:`EvaluationResult`.

Each model runs at most once per input. The threshold sweep then works on arrays: one sort of
the primary's scores, cumulative sums of "primary correct" and "fallback correct", and one row
per *distinct* score (tied scores are accepted together, so they make one row). The sweep is
O(n log n) however many thresholds there are; the study this library grew out of re-ran the
model for each of a handful of thresholds instead.

The reusable core is :func:`threshold_sweep`, which needs only ``(scores, primary_correct,
fallback_correct)`` and optional per-input costs; :func:`evaluate` turns models, predictions or
arrays into those and wraps the sweep in an :class:`EvaluationResult`.

Conventions
-----------
* An input is accepted by the primary when ``score >= threshold``; deferred inputs are answered
  by the fallback.
* The first row of every table has ``threshold = +inf``: nothing accepted, everything deferred
  (the fallback alone). The last row accepts everything (the primary alone).
* ``accepted_accuracy`` is ``nan`` where nothing is accepted.
* Cost follows the cascade accounting of :mod:`confroute.core.cost`: every input pays the primary,
  deferred inputs also pay the fallback; ``savings = 1 - cost / cost_of_fallback_on_everything``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..calibration import metrics
from ..core import _html
from ..core._optional import import_pandas
from ..core.types import Predictions
from ..core.scores import checked_scores, resolve_score

__all__ = [
    "evaluate",
    "EvaluationResult",
    "OperatingPoint",
    "Sweep",
    "threshold_sweep",
    "pareto_front",
    "stage_prices",
]

#: Columns of :attr:`EvaluationResult.table`, in display order.
TABLE_COLUMNS = (
    "threshold",
    "n_accepted",
    "coverage",
    "routed_fraction",
    "accepted_accuracy",
    "system_accuracy",
    "cost",
    "savings",
)


# --------------------------------------------------------------------------- the core sweep
@dataclass(frozen=True)
class Sweep:
    """Counts at every distinct threshold, strictest first (row 0: ``+inf``, nothing accepted).

    Attributes
    ----------
    n : int
    thresholds : ndarray of float, shape (d + 1,)
    n_accepted : ndarray of int
        Inputs with ``score >= threshold``.
    primary_correct : ndarray of int
        Correct primary answers among the accepted inputs.
    system_correct : ndarray of int or None
        Correct answers of the whole system (primary on accepted, fallback on deferred).
    cost : ndarray of float or None
        Total cost of the ``n`` inputs at each threshold.
    baseline_cost : float or None
        Cost of sending every input to the fallback alone.
    order : ndarray of int
        The permutation that sorts the scores in decreasing order (reused for AURC).
    """

    n: int
    thresholds: np.ndarray
    n_accepted: np.ndarray
    primary_correct: np.ndarray
    system_correct: np.ndarray | None = None
    cost: np.ndarray | None = None
    baseline_cost: float | None = None
    order: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_errors(self) -> np.ndarray:
        """Primary errors among the accepted inputs."""
        return self.n_accepted - self.primary_correct


def _per_input(value: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a number or have shape ({n},), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    return arr


def threshold_sweep(
    scores: Any,
    primary_correct: Any,
    fallback_correct: Any = None,
    *,
    primary_cost: Any = None,
    fallback_cost: Any = None,
) -> Sweep:
    """Accepted counts, correct counts and cost at every distinct threshold, in O(n log n).

    Parameters
    ----------
    scores : array of shape (n,)
        Primary confidence; accepted when ``score >= threshold``. NaN is an error.
    primary_correct : array of bool, shape (n,)
    fallback_correct : array of bool, shape (n,), optional
        Whether the fallback (or the rest of a cascade) is right on each input.
    primary_cost, fallback_cost : float or array of shape (n,), optional
        Price of each input at each stage (give both or neither). Every input pays
        ``primary_cost``; deferred inputs also pay ``fallback_cost``. Per-input arrays let a
        later stage's cost depend on the input (token-priced APIs, deeper cascades).

    Returns
    -------
    Sweep

    Examples
    --------
    >>> sw = threshold_sweep([0.9, 0.6, 0.6, 0.2], [True, True, False, False],
    ...                      [True, True, True, False], primary_cost=1.0, fallback_cost=5.0)
    >>> sw.thresholds.tolist(), sw.n_accepted.tolist(), sw.primary_correct.tolist()
    ([inf, 0.9, 0.6, 0.2], [0, 1, 3, 4], [0, 1, 2, 2])
    >>> sw.system_correct.tolist(), sw.cost.tolist()
    ([3, 3, 2, 2], [24.0, 19.0, 9.0, 4.0])
    """
    s = metrics._check_scores(scores, "scores")
    n = s.shape[0]
    pc = metrics._check_correct(primary_correct, n, "primary_correct")
    fc = None if fallback_correct is None else metrics._check_correct(fallback_correct, n, "fallback_correct")
    if (primary_cost is None) != (fallback_cost is None):
        raise ValueError("give both primary_cost and fallback_cost, or neither")

    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    # Last position of each run of equal scores: accepting a tie means accepting all of it.
    ends = np.flatnonzero(s_sorted[1:] != s_sorted[:-1])
    ends = np.r_[ends, n - 1] if n else ends
    thresholds = np.r_[np.inf, s_sorted[ends]]
    n_accepted = np.r_[0, ends + 1].astype(np.int64)
    cum_pc = np.cumsum(pc[order], dtype=np.int64)
    primary_ok = np.r_[0, cum_pc[ends]]

    system_ok = None
    if fc is not None:
        cum_fc = np.cumsum(fc[order], dtype=np.int64)
        total_fc = int(cum_fc[-1]) if n else 0
        system_ok = primary_ok + (total_fc - np.r_[0, cum_fc[ends]])

    cost = baseline = None
    if primary_cost is not None:
        c0 = _per_input(primary_cost, n, "primary_cost")
        c1 = _per_input(fallback_cost, n, "fallback_cost")
        cum_c1 = np.cumsum(c1[order])
        baseline = float(cum_c1[-1]) if n else 0.0
        cost = float(c0.sum()) + (baseline - np.r_[0.0, cum_c1[ends]])
    return Sweep(n, thresholds, n_accepted, primary_ok, system_ok, cost, baseline, order)


def pareto_front(cost: Any, accuracy: Any) -> np.ndarray:
    """Indices of the points no other point beats on both cost (lower) and accuracy (higher).

    Returned in order of increasing cost (and so increasing accuracy).

    Examples
    --------
    >>> pareto_front([1, 2, 3, 4], [0.8, 0.7, 0.9, 0.9]).tolist()
    [0, 2]
    """
    c = np.asarray(cost, dtype=np.float64)
    a = np.asarray(accuracy, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(c) & np.isfinite(a))
    # Cheapest first; among equal costs the most accurate first, so it is the one kept.
    order = ok[np.lexsort((-a[ok], c[ok]))]
    best_before = np.r_[-np.inf, np.maximum.accumulate(a[order])[:-1]]
    return order[a[order] > best_before]


def stage_prices(cost_model: Any, n_stages: int = 2) -> np.ndarray | None:
    """Per-input price of each stage from a cost model (anything with ``stage_costs``) or a
    sequence of numbers; ``None`` passes through."""
    if cost_model is None:
        return None
    raw = getattr(cost_model, "stage_costs", cost_model)
    try:
        prices = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(
            "cost_model must be a CostModel (anything with a stage_costs array) or a sequence of "
            f"per-input prices, got {type(cost_model).__name__}"
        ) from None
    if prices.shape != (n_stages,):
        raise ValueError(f"need one price per stage ({n_stages}), got {prices.tolist()}")
    if not np.isfinite(prices).all() or (prices < 0).any():
        raise ValueError(f"stage prices must be finite and >= 0, got {prices.tolist()}")
    return prices


# --------------------------------------------------------------------------- results
def _json(x: Any) -> Any:
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


@dataclass(frozen=True)
class OperatingPoint:
    """The system's figures at one threshold (see :meth:`EvaluationResult.at`)."""

    threshold: float
    n_accepted: int
    coverage: float
    routed_fraction: float
    accepted_accuracy: float
    system_accuracy: float | None
    cost: float | None
    savings: float | None
    #: The per-class thresholds (indexed by predicted class) when the point is per-class; then
    #: ``threshold`` is ``nan``.
    class_thresholds: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: _json(v) for k, v in self.__dict__.items()}
        if self.class_thresholds is not None:
            out["class_thresholds"] = [_json(float(v)) for v in self.class_thresholds]
        return out


@dataclass(frozen=True, repr=False)
class EvaluationResult:
    """Everything :func:`evaluate` measured: one table row per distinct threshold, plus summaries.

    Attributes
    ----------
    n : int
        Number of evaluated inputs.
    stage_names : tuple of str
    score : str
        Name of the confidence score swept.
    table : dict of str to ndarray
        Columns ``threshold, n_accepted, coverage, routed_fraction, accepted_accuracy,
        system_accuracy, cost, savings``, one entry per distinct threshold, strictest first;
        row 0 (``threshold = inf``) accepts nothing. ``system_accuracy`` is ``nan`` without
        fallback answers; ``cost`` and ``savings`` are ``nan`` without prices.
    stage_accuracy : dict of str to float
        Each stage's accuracy alone on all inputs.
    aurc, eaurc : float
        Of the primary's score (see :func:`confroute.calibration.metrics.aurc`).
    ece : float or None
        Top-label ECE (15 equal-width bins) of the probabilities the primary is routed on
        (after calibration when there is a calibrator); ``None`` when only scores were given.
    ece_before_calibration : float or None
        ECE of the raw probabilities, when a calibrator was applied.
    stage_costs : ndarray or None
        Per-input price of each stage.
    scores, primary_correct, fallback_correct : ndarray
        The per-input arrays the sweep ran on (kept for plots and :meth:`at`).
    reliability, reliability_before_calibration : ReliabilityTable or None
    """

    n: int
    stage_names: tuple[str, ...]
    score: str
    table: dict[str, np.ndarray]
    stage_accuracy: dict[str, float]
    aurc: float
    eaurc: float
    ece: float | None = None
    ece_before_calibration: float | None = None
    stage_costs: np.ndarray | None = None
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    primary_correct: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    fallback_correct: np.ndarray | None = None
    reliability: metrics.ReliabilityTable | None = None
    reliability_before_calibration: metrics.ReliabilityTable | None = None
    primary_labels: np.ndarray | None = None
    classes: tuple[str, ...] | None = None
    per_class: OperatingPoint | None = None

    # -- access ------------------------------------------------------------------------------
    @property
    def thresholds(self) -> np.ndarray:
        return self.table["threshold"]

    @property
    def n_thresholds(self) -> int:
        """Number of table rows (distinct scores, plus the accept-nothing row)."""
        return int(self.table["threshold"].shape[0])

    @property
    def has_cost(self) -> bool:
        return self.stage_costs is not None

    @property
    def has_fallback(self) -> bool:
        return self.fallback_correct is not None

    def _row(self, threshold: float) -> int:
        # Rows are strictest first; the row for t is the last one whose threshold is >= t, i.e.
        # the one that accepts exactly the inputs with score >= t.
        return int(np.searchsorted(-self.thresholds, -float(threshold), side="right") - 1)

    def at(self, threshold: Any) -> OperatingPoint:
        """The figures when routing at ``threshold`` (accept ``score >= threshold``).

        Exact for any threshold, not only the table's: it picks the row that accepts the
        same inputs. ``threshold`` may also be per-class, as for the router (an array indexed
        by the primary's predicted class, or a mapping from class name); that needs the
        primary's predictions (not bare labels with scores).
        """
        if isinstance(threshold, Mapping) or np.ndim(threshold) == 1:
            return self._at_per_class(threshold)
        if np.isnan(threshold):
            raise ValueError("threshold is NaN")
        i = self._row(threshold)
        t = self.table
        return OperatingPoint(
            threshold=float(threshold),
            n_accepted=int(t["n_accepted"][i]),
            coverage=float(t["coverage"][i]),
            routed_fraction=float(t["routed_fraction"][i]),
            accepted_accuracy=float(t["accepted_accuracy"][i]),
            system_accuracy=float(t["system_accuracy"][i]) if self.has_fallback else None,
            cost=float(t["cost"][i]) if self.has_cost else None,
            savings=float(t["savings"][i]) if self.has_cost else None,
        )

    def class_threshold_array(self, threshold: Any) -> np.ndarray:
        """Per-class thresholds as an array in the primary's class order."""
        if self.primary_labels is None:
            raise ValueError("per-class thresholds need the primary's predicted classes; evaluate "
                             "from Predictions or probabilities, not from labels and scores")
        k = int(self.primary_labels.max(initial=-1)) + 1 if self.classes is None else len(self.classes)
        if isinstance(threshold, Mapping):
            if self.classes is None:
                raise ValueError("thresholds by class name need named classes")
            unknown = sorted(set(map(str, threshold)) - set(self.classes))
            missing = sorted(set(self.classes) - set(map(str, threshold)))
            if unknown or missing:
                raise ValueError(f"per-class thresholds: unknown classes {unknown}, missing {missing}")
            return np.array([float(threshold[c]) for c in self.classes])
        arr = np.asarray(threshold, dtype=np.float64)
        if arr.ndim != 1 or arr.size < k or np.isnan(arr).any():
            raise ValueError(f"need one threshold per class ({k}) without NaN, got shape {arr.shape}")
        return arr

    def _at_per_class(self, threshold: Any) -> OperatingPoint:
        thr = self.class_threshold_array(threshold)
        assert self.primary_labels is not None
        accept = self.scores >= thr[self.primary_labels]
        m, n = int(accept.sum()), self.n
        pc = self.primary_correct
        system = cost = savings = None
        if self.has_fallback:
            assert self.fallback_correct is not None
            right = pc[accept].sum() + self.fallback_correct[~accept].sum()
            system = float(right / n) if n else float("nan")
        if self.has_cost:
            assert self.stage_costs is not None
            c0, c1 = float(self.stage_costs[0]), float(self.stage_costs[1])
            cost = n * c0 + (n - m) * c1
            savings = 1.0 - cost / (n * c1) if n * c1 else float("nan")
        return OperatingPoint(
            threshold=float("nan"),
            n_accepted=m,
            coverage=m / n if n else float("nan"),
            routed_fraction=1.0 - m / n if n else float("nan"),
            accepted_accuracy=float(pc[accept].mean()) if m else float("nan"),
            system_accuracy=system,
            cost=cost,
            savings=savings,
            class_thresholds=tuple(float(v) for v in thr),
        )

    def pareto(self) -> np.ndarray:
        """Row indices on the cost / system-accuracy Pareto front (needs prices and a fallback)."""
        if not (self.has_cost and self.has_fallback):
            raise ValueError("the Pareto front needs stage prices and fallback answers")
        return pareto_front(self.table["cost"], self.table["system_accuracy"])

    # -- export ------------------------------------------------------------------------------
    def to_pandas(self) -> Any:
        """The per-threshold table as a DataFrame (requires pandas)."""
        pd = import_pandas()
        return pd.DataFrame({c: self.table[c] for c in TABLE_COLUMNS})

    def summary(self) -> dict[str, Any]:
        """The scalar figures, JSON-serialisable."""
        return {
            "n": self.n,
            "stage_names": list(self.stage_names),
            "score": self.score,
            "stage_accuracy": {k: _json(v) for k, v in self.stage_accuracy.items()},
            "aurc": _json(self.aurc),
            "eaurc": _json(self.eaurc),
            "ece": _json(self.ece),
            "ece_before_calibration": _json(self.ece_before_calibration),
            "stage_costs": None if self.stage_costs is None else [float(c) for c in self.stage_costs],
            "n_thresholds": self.n_thresholds,
        }

    def to_dict(self, max_rows: int | None = None) -> dict[str, Any]:
        """Summary plus the table as lists (JSON-serialisable: non-finite numbers become ``None``,
        so the accept-nothing row has ``threshold: null``).

        Parameters
        ----------
        max_rows : int, optional
            Keep at most this many table rows, evenly spread over coverage (always including
            the first and last); useful for millions of distinct scores.
        """
        rows = self._spread_rows(max_rows) if max_rows is not None else slice(None)
        out = self.summary()
        out["table"] = {
            c: [_json(v) for v in (self.table[c][rows].tolist())] if c != "n_accepted"
            else [int(v) for v in self.table[c][rows]]
            for c in TABLE_COLUMNS
        }
        return out

    def _spread_rows(self, k: int) -> np.ndarray:
        d = self.n_thresholds
        if k >= d:
            return np.arange(d)
        if k < 2:
            raise ValueError("max_rows must be at least 2")
        targets = np.linspace(0.0, 1.0, k)
        idx = np.searchsorted(self.table["coverage"], targets, side="left")
        return np.unique(np.clip(np.r_[0, idx, d - 1], 0, d - 1))

    # -- display -----------------------------------------------------------------------------
    def plot(self, kind: str = "summary", ax: Any = None, path: Any = None, **kwargs: Any) -> Any:
        """Plot with :mod:`confroute.evaluation.plotting` (needs matplotlib: ``confroute[plot]``).

        Parameters
        ----------
        kind : str, default "summary"
            ``"summary"`` (the three figures side by side; returns a Figure),
            ``"accuracy_vs_threshold"``, ``"cost_vs_threshold"``, ``"accuracy_vs_cost"``,
            ``"risk_coverage"``, ``"accuracy_coverage"``, ``"reliability"`` (each returns Axes).
        ax : matplotlib Axes, optional
        path : str or Path, optional
            Also save the figure there as PNG.
        """
        from . import plotting

        return plotting.plot_result(self, kind=kind, ax=ax, path=path, **kwargs)

    def _repr_html_(self) -> str:
        return _html.evaluation_html(self)

    def __repr__(self) -> str:
        lines = [
            f"EvaluationResult(n={self.n}, stages={list(self.stage_names)}, score={self.score!r}, "
            f"{self.n_thresholds} thresholds)"
        ]
        acc = "   ".join(f"{k} alone {v:.4f}" for k, v in self.stage_accuracy.items())
        lines.append(f"  accuracy: {acc}")
        extra = f"  AURC {self.aurc:.4f}   E-AURC {self.eaurc:.4f}"
        if self.ece is not None:
            extra += f"   ECE {self.ece:.4f}"
            if self.ece_before_calibration is not None:
                extra += f" (before calibration {self.ece_before_calibration:.4f})"
        lines.append(extra)
        header = f"  {'threshold':>10} {'coverage':>9} {'acc(accepted)':>14}"
        if self.has_fallback:
            header += f" {'system acc':>11}"
        if self.has_cost:
            header += f" {'cost':>12} {'savings':>8}"
        lines.append(header)
        t = self.table
        for i in self._spread_rows(11):
            row = f"  {t['threshold'][i]:>10.4g} {t['coverage'][i]:>9.1%} {t['accepted_accuracy'][i]:>14.4f}"
            if self.has_fallback:
                row += f" {t['system_accuracy'][i]:>11.4f}"
            if self.has_cost:
                row += f" {t['cost'][i]:>12.5g} {t['savings'][i]:>8.1%}"
            lines.append(row)
        if self.per_class is not None:
            p = self.per_class
            row = f"  {'per-class':>10} {p.coverage:>9.1%} {p.accepted_accuracy:>14.4f}"
            if self.has_fallback:
                row += f" {p.system_accuracy:>11.4f}"
            if self.has_cost:
                row += f" {p.cost:>12.5g} {p.savings:>8.1%}"
            lines.append(row)
        return "\n".join(lines)


# --------------------------------------------------------------------------- evaluate()
def _is_str_array(a: np.ndarray) -> bool:
    return a.dtype.kind in "USO" and a.size > 0 and isinstance(a.flat[0], str)


def _correct(stage: Any, labels: np.ndarray, name: str, n: int) -> np.ndarray:
    """Per-input correctness of a stage's answers, matching classes by name or by index."""
    if isinstance(stage, Predictions):
        if len(stage) != n:
            raise ValueError(f"{name}: {len(stage)} predictions for {n} labels")
        if _is_str_array(labels):
            if stage.classes is None:
                raise ValueError(
                    f"labels are class names but {name} does not name its classes; give class "
                    "indices or Predictions with classes"
                )
            unknown = sorted(set(labels.tolist()) - set(stage.classes))
            if unknown:
                raise ValueError(f"labels {unknown[:5]} are not among {name}'s classes {list(stage.classes)}")
            return stage.label_names == labels
        return stage.labels == labels
    pred = np.asarray(stage)
    if pred.shape != (n,):
        raise ValueError(f"{name}: predicted labels must have shape ({n},), got {pred.shape}")
    if _is_str_array(pred) != _is_str_array(labels):
        raise ValueError(
            f"{name}'s predicted labels and the true labels must both be class names or both be "
            "class indices"
        )
    return pred == labels


def _as_predictions(x: Any, name: str) -> Any:
    """Predictions stay; an (n, k) array becomes validated probabilities; (n,) labels stay."""
    if x is None or isinstance(x, Predictions):
        return x
    arr = np.asarray(x)
    if arr.ndim == 2:
        return Predictions.from_probs(arr, source=name)
    if arr.ndim == 1:
        return arr
    raise ValueError(
        f"{name} must be Predictions, an (n, k) probability matrix or (n,) labels; got {arr.shape}"
    )


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)] or [slice(0, 0)]


def _progress(iterable: Any, total: int, progress: bool | None, desc: str) -> Any:
    if progress is False:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress:
            raise ImportError("progress=True needs tqdm: pip install 'confroute[progress]'") from None
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="chunk", disable=None if progress is None else False)


def _router_arrays(
    router: Any, inputs: Any, chunk_size: int, progress: bool | None, all_scores: bool = False
) -> tuple[list[Predictions], Any, Predictions | None]:
    """Run each stage once on every input (in chunks, for a progress bar) and score it.

    Returns the stages' predictions, the primary's scores (or, with ``all_scores``, a list of
    every non-last stage's scores) and the primary's uncalibrated predictions when it has a
    calibrator.
    """
    from ..predictors.base import as_sequence

    inputs = as_sequence(inputs)
    n = len(inputs)
    n_stages = router.n_stages
    n_scored = n_stages - 1 if all_scores else 1
    # The raw primary predictions are kept to report ECE before calibration.
    raw_ok = router.calibrators[0] is not None
    parts: list[list[Predictions]] = [[] for _ in range(n_stages)]
    raw_parts: list[Predictions] = []
    score_parts: list[list[np.ndarray]] = [[] for _ in range(n_scored)]
    slices = _chunks(n, chunk_size)
    for sl in _progress(slices, len(slices), progress, "evaluate"):
        chunk = inputs[sl]
        uncalibrated = router.stage_predictions(chunk, calibrated=False)
        raw_parts.append(uncalibrated[0])
        preds = [router._calibrated(s, p) for s, p in enumerate(uncalibrated)]
        for s in range(n_stages):
            parts[s].append(preds[s])
        for s in range(n_scored):
            score_parts[s].append(np.asarray(router.stage_score(s, preds[s], chunk), dtype=np.float64))
    stage_preds = [Predictions.concat(p) for p in parts]
    raw = Predictions.concat(raw_parts) if raw_ok else None
    scores = [np.concatenate(p) for p in score_parts]
    return stage_preds, scores if all_scores else scores[0], raw


def evaluate(
    router: Any = None,
    inputs: Any = None,
    labels: Any = None,
    *,
    primary: Any = None,
    fallback: Any = None,
    scores: Any = None,
    score: Any = "max_prob",
    calibrator: Any = None,
    cost_model: Any = None,
    stage_names: Sequence[str] | None = None,
    progress: bool | None = None,
    chunk_size: int = 4096,
    stages: Sequence[Any] | None = None,
    grid: int | Sequence[Any] = 20,
    per_class_thresholds: Any = None,
) -> Any:
    """Measure a router at every distinct threshold (two stages) or at every threshold tuple of
    a grid (cascades), running each model once.

    Two ways to call it:

    * ``evaluate(router, inputs, labels)``: runs every stage of a
      :class:`~confroute.ThresholdRouter` once on all inputs (via ``router.stage_predictions``,
      calibrated as the router calibrates), scores the primary with the router's score, and takes
      prices from ``router.cost_model``.
    * ``evaluate(labels=y, primary=..., fallback=..., cost_model=...)``: from precomputed
      predictions, for when the models already ran (or run elsewhere).

    Parameters
    ----------
    router : ThresholdRouter, optional
    inputs : sequence, optional
        The router's inputs; with precomputed arrays, only needed by scores that read inputs.
    labels : array of shape (n,)
        True labels: class indices, or class names when the stages name their classes.
    primary : Predictions or array of shape (n, k) or (n,)
        The primary's predictions: a :class:`~confroute.Predictions`, a probability matrix, or
        predicted labels (then give ``scores``).
    fallback : Predictions or array of shape (n, k) or (n,), optional
        The fallback's predictions or predicted labels. Without it, system accuracy is ``nan``.
    scores : array of shape (n,), optional
        The primary's confidence; default: ``score`` applied to the (calibrated) primary.
    score : str or callable, default "max_prob"
        Score name or function, as for the router (ignored when ``scores`` is given).
    calibrator : fitted calibrator, optional
        Applied to the primary's ``log_scores()`` before scoring (precomputed mode); the result
        reports ECE before and after. Fit it on held-out data, not on what you evaluate on.
    cost_model : CostModel or sequence of float, optional
        Per-input price of each stage: a :class:`~confroute.CostModel` (any object with a
        ``stage_costs`` array) or ``[primary_price, fallback_price]``.
    stage_names : (str, str), optional
        Default: the router's names, else ``("primary", "fallback")``.
    progress : bool or None, default None
        Progress bar over chunks of inputs when running a router: ``None`` shows one when tqdm is
        installed, ``True`` requires it, ``False`` hides it.
    chunk_size : int, default 4096
        Inputs per ``stage_predictions`` call when running a router.
    stages : sequence of Predictions or arrays, optional
        Precomputed predictions of every stage, in cascade order (instead of ``primary`` and
        ``fallback``). Two stages give an :class:`EvaluationResult` as above.
    grid : int or sequence of arrays, default 20
        Cascades of more than two stages only: quantiles of each non-last stage's scores to
        try as thresholds, or the candidate thresholds themselves (see
        :func:`confroute.evaluation.cascade.evaluate_cascade`).
    per_class_thresholds : array or mapping, optional
        Also measure the system at these per-class thresholds of the primary (e.g. from
        :func:`confroute.selection.per_class.choose_per_class_thresholds`): the result's ``per_class``
        holds that operating point, to compare with the table's global thresholds.

    Returns
    -------
    EvaluationResult or CascadeEvaluation
        A :class:`~confroute.evaluation.cascade.CascadeEvaluation` (one row per threshold tuple)
        for a cascade of more than two stages; an :class:`EvaluationResult` otherwise.

    Examples
    --------
    >>> y = np.array([0, 1, 1, 0])
    >>> primary = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.45, 0.55]])
    >>> res = evaluate(labels=y, primary=primary, fallback=np.array([0, 1, 1, 1]),
    ...                cost_model=[1.0, 10.0])
    >>> res.stage_accuracy
    {'primary': 0.5, 'fallback': 0.75}
    >>> p = res.at(0.65)  # accepts 0.9 and 0.7 (both right); the fallback gets 1 of the other 2
    >>> p.coverage, p.accepted_accuracy, p.system_accuracy, p.cost, p.savings
    (0.5, 1.0, 0.75, 24.0, 0.4)
    """
    n_router_stages = None if router is None else (getattr(router, "n_stages", None) or len(router.stages))
    if stages is not None:
        if router is not None or primary is not None or fallback is not None:
            raise ValueError("give stages=[...] or a router or primary/fallback, only one of them")
        stages = list(stages)
        if len(stages) == 2:
            primary, fallback = stages
        elif len(stages) < 2:
            raise ValueError(f"stages must hold at least 2 stages' predictions, got {len(stages)}")
    if (stages is not None and len(stages) > 2) or (n_router_stages is not None and n_router_stages > 2):
        if calibrator is not None or per_class_thresholds is not None:
            raise ValueError("calibrator= and per_class_thresholds= apply to two-stage evaluation only")
        from .cascade import evaluate_cascade

        return evaluate_cascade(
            router, inputs, labels, stages=stages, scores=scores, score=score, cost_model=cost_model,
            grid=grid, stage_names=stage_names, progress=progress, chunk_size=chunk_size,
        )
    if router is not None:
        if n_router_stages != 2:
            raise ValueError(f"evaluate() needs a router with at least two stages, got {n_router_stages}")
        if primary is not None or fallback is not None or scores is not None:
            raise ValueError("give either a router (with inputs) or precomputed primary/fallback, not both")
        if inputs is None or labels is None:
            raise ValueError("evaluate(router, inputs, labels): inputs and labels are required")
        if calibrator is not None:
            raise ValueError("a router applies its own calibrators; pass calibrator=None")
        stage_preds, s, raw = _router_arrays(router, inputs, int(chunk_size), progress)
        primary_p, fallback_p = stage_preds[0], stage_preds[1]
        names = tuple(stage_names or getattr(router, "names", None) or ("primary", "fallback"))
        cm = cost_model if cost_model is not None else getattr(router, "cost_model", None)
        sc = getattr(router, "score", "max_prob")
        score_name = _score_name(sc[0] if isinstance(sc, (list, tuple)) else sc)
    else:
        if primary is None:
            raise ValueError("give a router, or precomputed predictions as primary=... (and fallback=...)")
        if labels is None:
            raise ValueError("labels are required")
        primary_p = _as_predictions(primary, "primary")
        fallback_p = _as_predictions(fallback, "fallback")
        raw = None
        if calibrator is not None:
            if not isinstance(primary_p, Predictions):
                raise ValueError("calibrator needs the primary's probabilities or logits, not labels")
            raw = primary_p
            primary_p = Predictions.from_probs(calibrator.transform(raw.log_scores()), raw.classes,
                                               source="calibrator")
        if scores is not None:
            s = np.asarray(scores, dtype=np.float64)
            score_name = "scores"
        else:
            if not isinstance(primary_p, Predictions):
                raise ValueError("primary is a label vector: give its confidence as scores=...")
            s = resolve_score(score)(primary_p, inputs)
            score_name = _score_name(score)
        names = tuple(stage_names or ("primary", "fallback"))
        cm = cost_model

    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    n = y.shape[0]
    s = checked_scores(s, n, "primary") if s.shape == (n,) else _shape_error(s, n)
    if len(names) != 2:
        raise ValueError(f"stage_names must name 2 stages, got {list(names)}")
    pc = _correct(primary_p, y, names[0], n)
    fc = None if fallback_p is None else _correct(fallback_p, y, names[1], n)
    prices = stage_prices(cm, 2)

    sweep = threshold_sweep(
        s, pc, fc,
        primary_cost=None if prices is None else prices[0],
        fallback_cost=None if prices is None else prices[1],
    )
    table = _table(sweep)

    stage_accuracy = {names[0]: float(pc.mean()) if n else float("nan")}
    if fc is not None:
        stage_accuracy[names[1]] = float(fc.mean()) if n else float("nan")

    reliability = reliability_raw = None
    if isinstance(primary_p, Predictions) and n:
        y_idx = _label_indices(primary_p, y)
        reliability = metrics.reliability_table(primary_p.probs, y_idx)
        if raw is not None:
            reliability_raw = metrics.reliability_table(raw.probs, y_idx)

    # AURC from the sweep's sort: one O(n log n) sort for the whole evaluation.
    aurc = metrics._aurc_sorted(s[sweep.order], ~pc[sweep.order]) if n else float("nan")
    eaurc = aurc - metrics.optimal_aurc(n, int((~pc).sum())) if n else float("nan")

    primary_labels = primary_p.labels if isinstance(primary_p, Predictions) else None
    result = EvaluationResult(
        n=n,
        stage_names=names,
        score=score_name,
        table=table,
        stage_accuracy=stage_accuracy,
        aurc=aurc,
        eaurc=eaurc,
        ece=None if reliability is None else reliability.ece,
        ece_before_calibration=None if reliability_raw is None else reliability_raw.ece,
        stage_costs=prices,
        scores=s,
        primary_correct=pc,
        fallback_correct=fc,
        reliability=reliability,
        reliability_before_calibration=reliability_raw,
        primary_labels=primary_labels,
        classes=primary_p.classes if isinstance(primary_p, Predictions) else None,
    )
    if per_class_thresholds is not None:
        from dataclasses import replace

        result = replace(result, per_class=result.at(per_class_thresholds))
    return result


def _shape_error(s: np.ndarray, n: int) -> np.ndarray:
    raise ValueError(f"scores must have shape ({n},) to match the labels, got {s.shape}")


def _score_name(score: Any) -> str:
    if isinstance(score, str):
        return score
    return getattr(score, "__name__", None) or type(score).__name__


def _label_indices(preds: Predictions, y: np.ndarray) -> np.ndarray:
    if _is_str_array(y):
        assert preds.classes is not None  # checked in _correct
        lookup = {c: i for i, c in enumerate(preds.classes)}
        return np.array([lookup[v] for v in y.tolist()], dtype=np.int64)
    return y.astype(np.int64)


def _table(sweep: Sweep) -> dict[str, np.ndarray]:
    n = sweep.n
    m = sweep.n_accepted
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = m / n if n else np.zeros(m.shape)
        accepted_acc = np.where(m > 0, sweep.primary_correct / np.maximum(m, 1), np.nan)
        if sweep.system_correct is not None and n:
            system = sweep.system_correct / n
        else:
            system = np.full(m.shape, np.nan)
        if sweep.cost is not None:
            cost = sweep.cost
            savings = 1.0 - cost / sweep.baseline_cost if sweep.baseline_cost else np.full(m.shape, np.nan)
        else:
            cost = savings = np.full(m.shape, np.nan)
    return {
        "threshold": sweep.thresholds,
        "n_accepted": m,
        "coverage": coverage,
        "routed_fraction": 1.0 - coverage,
        "accepted_accuracy": accepted_acc,
        "system_accuracy": system,
        "cost": cost,
        "savings": savings,
    }
