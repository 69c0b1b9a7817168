"""One evaluation for any number of stages: :func:`evaluate` and :class:`Evaluation`.

Each model runs at most once per input; everything after that is array work on three things per
input: each stage's score, each stage's predicted class and whether each stage is right. The
result holds one table row per threshold candidate:

* **two stages** (the fast path): one row per *distinct* primary score, exact. One sort of the
  scores and cumulative sums of "primary correct" and "fallback correct" give every row in
  O(n log n) (:func:`threshold_sweep`); tied scores are accepted together, so they make one row.
* **N stages**: one row per combination of a grid of candidate thresholds per non-last stage
  (:func:`confroute.evaluation.grid.cascade_counts`).

Whatever the number of stages, :meth:`Evaluation.at` gives the exact figures at any thresholds
(global or per class) through the library's one decision rule
(:func:`confroute.core.decision.answering_stage`), and costs come from the
:class:`~confroute.CostModel` alone.

Labels are the user's own label values, matched to the stages' classes by value
(:func:`confroute.core.classes.label_indices`); stages are aligned by class name.

Conventions
-----------
* An input is accepted by a stage when ``score >= threshold``; the last stage answers the rest.
* The first row of every table has threshold ``+inf`` everywhere: nothing accepted before the last
  stage. For two stages the last row accepts everything (the primary alone).
* ``accepted_accuracy`` (of the first stage) is ``nan`` where it accepts nothing.
* Cost follows :mod:`confroute.core.cost`: an input answered by stage ``s`` paid stages ``0..s``;
  ``savings = 1 - cost / cost of sending every input to the last stage alone``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..calibration import metrics
from ..core import _html
from ..core._json import json_value
from ..core._optional import import_pandas
from ..core.batch import as_batch, n_rows, slice_rows
from ..core.classes import Classes, align, as_classes, class_labels, label_indices
from ..core.cost import CostModel
from ..core.decision import answering_stage, check_threshold, resolve_threshold
from ..core.scores import checked_scores, resolve_score
from ..core.types import Predictions
from .grid import cascade_counts, grids_for

__all__ = [
    "evaluate",
    "Evaluation",
    "EvaluationResult",
    "OperatingPoint",
    "Sweep",
    "threshold_sweep",
    "pareto_front",
]

#: Columns of :meth:`Evaluation.to_pandas` for two stages, in display order.
TABLE_COLUMNS = (
    "threshold",
    "n_accepted",
    "coverage",
    "routed_fraction",
    "accepted_accuracy",
    "system_accuracy",
    "cost",
    "cost_per_input",
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




# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class OperatingPoint:
    """The system's figures at one choice of thresholds (see :meth:`Evaluation.at`).

    Attributes
    ----------
    thresholds : tuple of float
        One per non-last stage; ``nan`` for a stage with per-class thresholds (then see
        ``class_thresholds``).
    answered : tuple of int
        Inputs answered by each stage.
    n : int
    coverage : float
        Share answered by the first stage (``shares[0]``).
    shares : tuple of float
        Share answered by each stage.
    accepted_accuracy : float
        Accuracy of the first stage on the inputs it answers (``nan`` if none).
    system_accuracy : float or None
        Accuracy of the whole system (``None`` without the last stage's answers).
    cost, cost_per_input, savings : float or None
        Total cost of the ``n`` inputs, per input, and savings against the last stage alone
        (``None`` without prices).
    class_thresholds : tuple or None
        Per stage, the per-class thresholds in column order (``None`` for a global threshold);
        ``None`` when no stage is per-class.
    row : int or None
        Table row of this point, when it is one.
    """

    thresholds: tuple[float, ...]
    answered: tuple[int, ...]
    n: int
    coverage: float
    shares: tuple[float, ...]
    accepted_accuracy: float
    system_accuracy: float | None
    cost: float | None
    cost_per_input: float | None
    savings: float | None
    class_thresholds: tuple[tuple[float, ...] | None, ...] | None = None
    row: int | None = None

    @property
    def threshold(self) -> float:
        """The first stage's threshold."""
        return self.thresholds[0]

    @property
    def n_accepted(self) -> int:
        """Inputs answered by the first stage."""
        return self.answered[0]

    @property
    def routed_fraction(self) -> float:
        return 1.0 - self.coverage if self.n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "thresholds": [json_value(t) for t in self.thresholds],
            "answered": list(self.answered),
            "n_accepted": self.n_accepted,
            "n": self.n,
            "coverage": json_value(self.coverage),
            "routed_fraction": json_value(self.routed_fraction),
            "shares": [json_value(s) for s in self.shares],
            "accepted_accuracy": json_value(self.accepted_accuracy),
            "system_accuracy": json_value(self.system_accuracy),
            "cost": json_value(self.cost),
            "cost_per_input": json_value(self.cost_per_input),
            "savings": json_value(self.savings),
            "row": self.row,
        }
        if self.class_thresholds is not None:
            out["class_thresholds"] = [
                None if c is None else [json_value(v) for v in c] for c in self.class_thresholds
            ]
        return out


def _table(
    thresholds: np.ndarray, answered: np.ndarray, correct: np.ndarray, n: int,
    cost_model: CostModel | None, last_known: bool,
) -> dict[str, np.ndarray]:
    """Every column from the counts: ``thresholds`` (M, N-1), ``answered`` and ``correct``
    (correct answers per stage) (M, N)."""
    m0 = answered[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = answered / n if n else np.full(answered.shape, np.nan)
        accepted = np.where(m0 > 0, correct[:, 0] / np.maximum(m0, 1), np.nan)
        n_correct = correct.sum(axis=1)
        system = n_correct / n if (n and last_known) else np.full(m0.shape, np.nan)
    if cost_model is not None:
        cost = cost_model.cost_of_answers(answered)
        per_input = cost / n if n else np.full(cost.shape, np.nan)
        savings = cost_model.savings_of(cost, n)
    else:
        cost = per_input = savings = np.full(m0.shape, np.nan)
    table = {
        "thresholds": thresholds,
        "answered": answered,
        "correct": correct,
        "shares": shares,
        "n_correct": n_correct if last_known else np.full(m0.shape, np.nan),
        "n_accepted": m0,
        "coverage": shares[:, 0] if answered.size else np.zeros(0),
        "routed_fraction": 1.0 - shares[:, 0] if answered.size else np.zeros(0),
        "accepted_accuracy": accepted,
        "system_accuracy": system,
        "cost": cost,
        "cost_per_input": per_input,
        "savings": savings,
    }
    if thresholds.shape[1] == 1:
        table["threshold"] = thresholds[:, 0]
    return table


@dataclass(frozen=True, repr=False)
class Evaluation:
    """A routed system measured on labelled data, at every threshold candidate at once.

    Build it with :func:`evaluate`, :meth:`from_router` (run the router's stages once) or
    :meth:`from_predictions` (stages that already ran). One type for any number of stages.

    Attributes
    ----------
    n : int
        Number of evaluated inputs.
    stage_names : tuple of str
    score : tuple of str
        Name of each non-last stage's confidence score.
    classes : tuple or None
        The stages' class values (``None`` when no stage names them: then column indices).
    exhaustive : bool
        True for two stages: one row per distinct primary score (exact). False for cascades:
        one row per combination of the threshold grids.
    grids : tuple of ndarray
        Candidate thresholds of each non-last stage, strictest first (``inf`` first).
    table : dict of str to ndarray
        ``thresholds`` (M, N-1), ``answered`` and ``correct`` (M, N) counts, ``shares`` (M, N),
        and per row ``n_accepted``, ``coverage``, ``routed_fraction``, ``accepted_accuracy`` (of
        the first stage), ``n_correct``, ``system_accuracy``, ``cost`` (total), ``cost_per_input``
        and ``savings``; two stages also have ``threshold`` (M,). Row 0 accepts nothing before
        the last stage. Cost columns are ``nan`` without prices, system accuracy without the
        last stage's answers.
    stage_accuracy : dict of str to float
        Each stage alone on all inputs.
    cost_model : CostModel or None
    stage_scores : ndarray of shape (N-1, n)
    correct : ndarray of bool, shape (N, n)
        Whether each stage is right on each input.
    stage_label_index : ndarray of shape (N, n)
        Each stage's predicted column (``-1`` where unknown).
    label_index : ndarray of shape (n,)
        The true labels as column indices.
    aurc, eaurc : float
        Of the first stage's score (:func:`confroute.calibration.metrics.aurc`).
    ece, ece_before_calibration : float or None
        Top-label ECE (15 bins) of the first stage's probabilities, after and before calibration.
    reliability, reliability_before_calibration : ReliabilityTable or None
    per_class : OperatingPoint or None
        The point at the ``per_class_thresholds`` given to :func:`evaluate`.
    """

    n: int
    stage_names: tuple[str, ...]
    score: tuple[str, ...]
    classes: Classes | None
    exhaustive: bool
    grids: tuple[np.ndarray, ...]
    table: dict[str, np.ndarray]
    stage_accuracy: dict[str, float]
    cost_model: CostModel | None
    stage_scores: np.ndarray
    correct: np.ndarray
    stage_label_index: np.ndarray
    label_index: np.ndarray
    n_classes: int = 0
    last_known: bool = True
    aurc: float = float("nan")
    eaurc: float = float("nan")
    ece: float | None = None
    ece_before_calibration: float | None = None
    reliability: metrics.ReliabilityTable | None = None
    reliability_before_calibration: metrics.ReliabilityTable | None = None
    per_class: OperatingPoint | None = field(default=None)

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_router(
        cls, router: Any, inputs: Any, labels: Any, *, cost_model: Any = None, grid: Any = 20,
        progress: bool | None = None, chunk_size: int = 4096, per_class_thresholds: Any = None,
    ) -> Evaluation:
        """Run every stage of ``router`` once on all inputs (calibrated and scored as the router
        does) and evaluate. Prices come from ``router.cost_model`` unless given."""
        stage_preds, scores, raw = _router_arrays(router, inputs, int(chunk_size), progress)
        cm = cost_model if cost_model is not None else getattr(router, "cost_model", None)
        score_names = [_score_name(s) for s in router.score[:-1]]
        return _build(stage_preds, labels, scores, score_names, list(router.names), cm, grid,
                      raw=raw, per_class_thresholds=per_class_thresholds)

    @classmethod
    def from_predictions(
        cls, labels: Any, stages: Sequence[Any], *, scores: Any = None, score: Any = "max_prob",
        calibrator: Any = None, cost_model: Any = None, stage_names: Sequence[str] | None = None,
        grid: Any = 20, inputs: Any = None, per_class_thresholds: Any = None, table: bool = True,
    ) -> Evaluation:
        """Evaluate stages that already ran.

        Parameters
        ----------
        labels : array of shape (n,)
            True labels, in the stages' label space (their class values).
        stages : sequence
            Each stage's predictions in cascade order: :class:`~confroute.Predictions`, an
            ``(n, k)`` probability matrix, or ``(n,)`` predicted labels (then give its scores;
            the last stage needs no scores).
        scores : array of shape (n,) or (N-1, n), optional
            The non-last stages' confidence; default: ``score`` applied to their predictions.
        score : str, callable or list, default "max_prob"
        calibrator : fitted calibrator, optional
            Applied to the first stage's ``log_scores()`` before scoring; the result reports ECE
            before and after. Fit it on held-out data, not on what you evaluate on.
        cost_model : CostModel or sequence of float, optional
        stage_names : sequence of str, optional
        grid : int or sequence of arrays, default 20
            Cascades of three or more stages: quantiles of each non-last stage's scores to try
            as thresholds, or the candidate thresholds themselves. Two stages use every
            distinct score (exact) unless candidate thresholds are given.
        inputs : sequence, optional
            Only needed by scores that read the inputs.
        per_class_thresholds : array or mapping, optional
            Also measure the system at these per-class thresholds of the first stage.
        table : bool, default True
            Cascades only: ``False`` skips the ``G^(N-1)``-row table (for deep cascades); the
            coordinate search of :func:`~confroute.choose_thresholds` and :meth:`Evaluation.at`
            still work.
        """
        stages = list(stages)
        if len(stages) < 2:
            raise ValueError(f"give the predictions of at least 2 stages, got {len(stages)}")
        preds = [_as_predictions(p, _default_names(len(stages))[i] if stage_names is None else stage_names[i])
                 for i, p in enumerate(stages)]
        raw = None
        if calibrator is not None:
            if not isinstance(preds[0], Predictions):
                raise ValueError("calibrator needs the first stage's probabilities or logits, not labels")
            raw = preds[0]
            preds[0] = Predictions.from_probs(calibrator.transform(raw.log_scores()), raw.classes,
                                              source="calibrator")
        n_scored = len(stages) - 1
        score_fns = list(score) if isinstance(score, (list, tuple)) else [score] * n_scored
        if len(score_fns) < n_scored:
            raise ValueError(f"give one score per non-last stage ({n_scored}), got {len(score_fns)}")
        if scores is not None:
            arr = np.asarray(scores, dtype=np.float64)
            score_list = [arr] if arr.ndim == 1 else list(arr)
            if len(score_list) != n_scored:
                raise ValueError(f"give scores for the {n_scored} non-last stage(s), got {len(score_list)}")
            score_names = ["scores"] * n_scored
        else:
            score_list = []
            for s in range(n_scored):
                if not isinstance(preds[s], Predictions):
                    raise ValueError(f"stage {s} is a label vector: give its confidence as scores=...")
                score_list.append(np.asarray(resolve_score(score_fns[s])(preds[s], inputs), dtype=np.float64))
            score_names = [_score_name(f) for f in score_fns[:n_scored]]
        names = list(stage_names) if stage_names is not None else _default_names(len(stages))
        return _build(preds, labels, score_list, score_names, names, cost_model, grid, raw=raw,
                      per_class_thresholds=per_class_thresholds, full_table=table)

    # -- access ------------------------------------------------------------------------------
    @property
    def n_stages(self) -> int:
        return len(self.stage_names)

    @property
    def n_rows(self) -> int:
        return int(self.table["n_accepted"].shape[0])

    n_thresholds = n_rows

    @property
    def n_candidates(self) -> int:
        """Threshold tuples on the grid (the product of the grid sizes)."""
        return int(np.prod([g.size for g in self.grids]))

    @property
    def thresholds(self) -> np.ndarray:
        """The first stage's threshold per row."""
        return self.table["thresholds"][:, 0]

    @property
    def scores(self) -> np.ndarray:
        """The first stage's scores."""
        return self.stage_scores[0]

    @property
    def primary_correct(self) -> np.ndarray:
        return self.correct[0]

    @property
    def fallback_correct(self) -> np.ndarray | None:
        return self.correct[-1] if self.last_known else None

    @property
    def primary_labels(self) -> np.ndarray:
        """The first stage's predicted column per input."""
        return self.stage_label_index[0]

    @property
    def labels(self) -> np.ndarray:
        """The true labels, in the user's label space."""
        return class_labels(self.label_index, self.classes)

    @property
    def has_cost(self) -> bool:
        return self.cost_model is not None

    @property
    def has_fallback(self) -> bool:
        return self.last_known

    @property
    def stage_costs(self) -> np.ndarray | None:
        return None if self.cost_model is None else self.cost_model.stage_costs

    def _row(self, threshold: float) -> int:
        # Two stages: rows are strictest first; the row for t is the last one whose threshold is
        # >= t, i.e. the one that accepts exactly the inputs with score >= t.
        return int(np.searchsorted(-self.thresholds, -float(threshold), side="right") - 1)

    def row(self, i: int) -> OperatingPoint:
        """Table row ``i`` as an :class:`OperatingPoint`."""
        t = self.table
        i = int(i)
        return OperatingPoint(
            thresholds=tuple(float(v) for v in t["thresholds"][i]),
            answered=tuple(int(v) for v in t["answered"][i]),
            n=self.n,
            coverage=float(t["coverage"][i]),
            shares=tuple(float(v) for v in t["shares"][i]),
            accepted_accuracy=float(t["accepted_accuracy"][i]),
            system_accuracy=float(t["system_accuracy"][i]) if self.last_known else None,
            cost=float(t["cost"][i]) if self.has_cost else None,
            cost_per_input=float(t["cost_per_input"][i]) if self.has_cost else None,
            savings=float(t["savings"][i]) if self.has_cost else None,
            row=i,
        )

    def at(self, thresholds: Any) -> OperatingPoint:
        """Exact figures at any thresholds, on the grid or not.

        ``thresholds`` is one threshold per non-last stage (a number for two stages is enough),
        or a threshold choice (anything with a ``thresholds`` attribute). A stage's threshold may
        be per class: an array in column order or a mapping from class value to threshold, as
        for the router. The answering stage comes from the library's one decision rule.

        Examples
        --------
        >>> res = evaluate(labels=[0, 1, 1, 0], primary=[[.9, .1], [.3, .7], [.6, .4], [.45, .55]],
        ...                fallback=[0, 1, 1, 1], cost_model=[1.0, 10.0])
        >>> p = res.at(0.65)
        >>> p.coverage, p.accepted_accuracy, p.system_accuracy, p.cost, p.savings
        (0.5, 1.0, 0.75, 24.0, 0.4)
        """
        values = getattr(thresholds, "thresholds", thresholds)
        if isinstance(values, dict) or np.ndim(values) == 0:
            values = [values]
        values = list(values)
        if self.n_stages == 2 and len(values) != 1 and all(np.ndim(v) == 0 for v in values):
            values = [np.asarray(values, dtype=np.float64)]  # a bare per-class array for 2 stages
        if len(values) != self.n_stages - 1:
            raise ValueError(f"give {self.n_stages - 1} threshold(s), one per non-last stage, got {len(values)}")
        resolved = [
            resolve_threshold(check_threshold(v, None, f"threshold of stage {s}"), self.classes,
                              self.n_classes, f"stage {self.stage_names[s]!r}")
            for s, v in enumerate(values)
        ]
        stage = answering_stage(list(self.stage_scores), resolved, list(self.stage_label_index[:-1]))
        return self._point(stage, resolved)

    def _point(self, stage: np.ndarray, resolved: Sequence[float | np.ndarray]) -> OperatingPoint:
        n = self.n
        answered = np.bincount(stage, minlength=self.n_stages)
        right = self.correct[stage, np.arange(n)] if n else np.zeros(0, dtype=bool)
        correct = np.bincount(stage, weights=right.astype(np.float64), minlength=self.n_stages)
        table = _table(np.zeros((1, self.n_stages - 1)), answered[None, :], correct[None, :], n,
                       self.cost_model, self.last_known)
        per_class = tuple(None if np.ndim(t) == 0 else tuple(float(v) for v in np.asarray(t)) for t in resolved)
        return OperatingPoint(
            thresholds=tuple(float(t) if np.ndim(t) == 0 else float("nan") for t in resolved),
            answered=tuple(int(v) for v in answered),
            n=n,
            coverage=float(table["coverage"][0]) if n else float("nan"),
            shares=tuple(float(v) for v in table["shares"][0]),
            accepted_accuracy=float(table["accepted_accuracy"][0]),
            system_accuracy=float(table["system_accuracy"][0]) if self.last_known else None,
            cost=float(table["cost"][0]) if self.has_cost else None,
            cost_per_input=float(table["cost_per_input"][0]) if self.has_cost else None,
            savings=float(table["savings"][0]) if self.has_cost else None,
            class_thresholds=per_class if any(c is not None for c in per_class) else None,
        )

    def best(
        self, *, target_system_accuracy: float | None = None, max_cost_per_input: float | None = None
    ) -> OperatingPoint:
        """The cheapest row reaching an accuracy, or the most accurate within a budget, on this
        data (no guarantee: see :func:`~confroute.choose_thresholds` for that)."""
        row = best_row(self.table, target_system_accuracy, max_cost_per_input, None)
        return self.row(row if row >= 0 else -1 - row)

    def pareto(self) -> np.ndarray:
        """Rows on the cost / system-accuracy Pareto front, cheapest first (needs prices and the
        last stage's answers)."""
        if not (self.has_cost and self.last_known):
            raise ValueError("the Pareto front needs stage prices and the last stage's answers")
        return pareto_front(self.table["cost_per_input"], self.table["system_accuracy"])

    def compare_to_alternatives(
        self, alternatives: dict[str, tuple[float, float]] | None = None, *, cost_unit: str = "cost per input"
    ) -> Any:
        """The routed operating points (the Pareto front of this table) beside single models on
        one accuracy-vs-cost front, with a sentence saying whether routing is on it.

        Each stage alone is always included, at its own price (the last stage alone does not pay
        the first); ``alternatives`` adds other models measured on the same inputs, as
        ``{name: (cost per input, accuracy)}`` (e.g. the fallback quantised to int8).

        Returns
        -------
        confroute.evaluation.alternatives.ParetoComparison
        """
        from .alternatives import compare_to_alternatives

        if not (self.has_cost and self.last_known):
            raise ValueError("comparing with single models needs stage prices and the last stage's answers")
        assert self.cost_model is not None
        prices = self.cost_model.stage_costs
        singles = {f"{name} alone": (float(prices[s]), float(self.correct[s].mean()) if self.n else float("nan"))
                   for s, name in enumerate(self.stage_names)}
        singles.update(alternatives or {})
        rows = self.pareto()
        labels = [f"row {r}: " + ", ".join(f"{v:.6g}" for v in self.table["thresholds"][r]) for r in rows]
        return compare_to_alternatives(
            self.table["cost_per_input"][rows], self.table["system_accuracy"][rows], singles,
            routed_names=[f"threshold {label}" for label in labels], cost_unit=cost_unit,
        )

    # -- export ------------------------------------------------------------------------------
    def _columns(self) -> dict[str, np.ndarray]:
        t = self.table
        if self.n_stages == 2:
            return {c: t[c] for c in TABLE_COLUMNS}
        cols: dict[str, np.ndarray] = {}
        for s, name in enumerate(self.stage_names[:-1]):
            cols[f"threshold_{name}"] = t["thresholds"][:, s]
        for s, name in enumerate(self.stage_names):
            cols[f"share_{name}"] = t["shares"][:, s]
        for c in ("accepted_accuracy", "system_accuracy", "cost", "cost_per_input", "savings"):
            cols[c] = t[c]
        return cols

    def to_pandas(self) -> Any:
        """The table as a DataFrame, one row per threshold candidate (requires pandas)."""
        pd = import_pandas()
        return pd.DataFrame(self._columns())

    def summary(self) -> dict[str, Any]:
        """The scalar figures, JSON-serialisable."""
        return {
            "n": self.n,
            "stage_names": list(self.stage_names),
            "score": list(self.score),
            "classes": None if self.classes is None else list(self.classes),
            "stage_accuracy": {k: json_value(v) for k, v in self.stage_accuracy.items()},
            "aurc": json_value(self.aurc),
            "eaurc": json_value(self.eaurc),
            "ece": json_value(self.ece),
            "ece_before_calibration": json_value(self.ece_before_calibration),
            "stage_costs": None if self.stage_costs is None else [float(c) for c in self.stage_costs],
            "n_rows": self.n_rows,
            "exhaustive": self.exhaustive,
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
        out["table"] = {c: [json_value(v) for v in col[rows].tolist()] for c, col in self._columns().items()}
        if self.per_class is not None:
            out["per_class"] = self.per_class.to_dict()
        return out

    def _spread_rows(self, k: int) -> np.ndarray:
        d = self.n_rows
        if k >= d:
            return np.arange(d)
        if k < 2:
            raise ValueError("max_rows must be at least 2")
        if not self.exhaustive:
            return np.unique(np.linspace(0, d - 1, k).round().astype(int))
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
        kind = f"{self.n_rows} thresholds" if self.exhaustive else f"{self.n_rows} threshold tuples"
        lines = [
            f"Evaluation(n={self.n}, stages={list(self.stage_names)}, score={list(self.score)}, {kind})"
        ]
        acc = "   ".join(f"{k} alone {v:.4f}" for k, v in self.stage_accuracy.items())
        lines.append(f"  accuracy: {acc}")
        extra = f"  AURC {self.aurc:.4f}   E-AURC {self.eaurc:.4f}"
        if self.ece is not None:
            extra += f"   ECE {self.ece:.4f}"
            if self.ece_before_calibration is not None:
                extra += f" (before calibration {self.ece_before_calibration:.4f})"
        lines.append(extra)
        if self.n_rows == 0:
            n_grid = int(np.prod([g.size for g in self.grids]))
            lines.append(f"  (no table: {n_grid} threshold tuples on the grid)")
            return "\n".join(lines)
        t = self.table
        thr_head = "threshold" if self.n_stages == 2 else "thresholds"
        header = f"  {thr_head:>18} {'coverage':>9} {'acc(accepted)':>14}"
        if self.has_fallback:
            header += f" {'system acc':>11}"
        if self.has_cost:
            header += f" {'cost/input':>12} {'savings':>8}"
        if not self.exhaustive and self.has_cost and self.has_fallback:
            front = self.pareto()
            rows = front[np.unique(np.linspace(0, max(front.size - 1, 0), 10).round().astype(int))]
            lines.append("  Pareto front (cost per input vs system accuracy):")
        else:
            rows = self._spread_rows(11)
        lines.append(header)

        def fmt(r: int | None, p: OperatingPoint | None = None) -> str:
            if p is None:
                assert r is not None
                p = self.row(r)
                thr = ", ".join(f"{v:.4g}" for v in t["thresholds"][r])
            else:
                thr = "per-class"
            row = f"  {thr:>18} {p.coverage:>9.1%} {p.accepted_accuracy:>14.4f}"
            if self.has_fallback:
                row += f" {p.system_accuracy:>11.4f}"
            if self.has_cost:
                row += f" {p.cost_per_input:>12.5g} {p.savings:>8.1%}"
            return row

        lines.extend(fmt(int(r)) for r in rows)
        if self.per_class is not None:
            lines.append(fmt(None, self.per_class))
        return "\n".join(lines)


#: Deprecated names of :class:`Evaluation` (kept for one release).
EvaluationResult = Evaluation
CascadeEvaluation = Evaluation


def best_row(
    table: dict[str, np.ndarray], target_acc: float | None, budget: float | None,
    bounds: tuple[np.ndarray, np.ndarray] | None,
) -> int:
    """Row index of the best feasible row; -1 - (safe row) when none is feasible."""
    if (target_acc is None) == (budget is None):
        raise ValueError("give exactly one of target_system_accuracy, max_cost_per_input")
    if budget is not None and not math.isfinite(budget):
        raise ValueError(f"max_cost_per_input must be a finite number, got {budget}")
    acc, cost = table["system_accuracy"], table["cost_per_input"]
    acc_b, cost_b = bounds if bounds is not None else (acc, cost)
    if target_acc is not None:
        if np.isnan(cost).all():
            # Without prices, the cheapest proxy is answering as early as possible.
            cost = -(table["shares"] * np.arange(table["shares"].shape[1], 0, -1)).sum(axis=1)
        ok = acc_b >= target_acc - 1e-12
        # Cheapest feasible; ties to the more accurate, then to the first row.
        key = np.lexsort((-acc, cost))
    else:
        if np.isnan(cost).all():
            raise ValueError("max_cost_per_input needs stage prices (cost_model)")
        assert budget is not None
        ok = cost_b <= budget + 1e-12
        key = np.lexsort((cost, -acc))
    feasible = key[ok[key]]
    if feasible.size:
        return int(feasible[0])
    # Safe end: the most accurate row (accuracy target) or the cheapest (budget).
    safe = np.lexsort((cost, -acc))[0] if target_acc is not None else np.lexsort((-acc, cost))[0]
    return -1 - int(safe)


# --------------------------------------------------------------------------- building one
def _default_names(k: int) -> list[str]:
    return ["primary", "fallback"] if k == 2 else [f"stage{i}" for i in range(k)]


def _score_name(score: Any) -> str:
    if isinstance(score, str):
        return score
    return getattr(score, "__name__", None) or type(score).__name__


def _as_predictions(x: Any, name: str) -> Any:
    """Predictions stay; an (n, k) array becomes validated probabilities; (n,) labels stay."""
    if x is None or isinstance(x, Predictions):
        return x
    arr = np.asarray(x)
    if arr.ndim == 2:
        return Predictions.from_probs(arr, source=name)
    if arr.ndim == 1:
        return arr
    raise ValueError(f"{name} must be Predictions, an (n, k) probability matrix or (n,) labels; got {arr.shape}")


def _class_space(stages: list[Any], labels: np.ndarray, names: list[str]) -> tuple[list[Any], Classes | None, int]:
    """Align the stages that give probabilities by class name; the classes and their number."""
    classes: Classes | None = None
    k: int | None = None
    out = list(stages)
    for s, p in enumerate(stages):
        if isinstance(p, Predictions):
            out[s], classes = align(p, classes, k, names[s])
            k = out[s].n_classes
    if k is None:  # only label vectors: the classes are the values that occur
        try:
            values = np.unique(np.concatenate([np.asarray(v, dtype=object) for v in stages if v is not None]
                                              + [labels.astype(object)]))
        except TypeError:
            raise ValueError(
                "the labels and the stages' predicted labels mix types (e.g. numbers and strings); "
                "give them all in one label space"
            ) from None
        classes = as_classes(values)
        k = len(values)
    return out, classes, k


def _build(
    stages: list[Any], labels: Any, score_list: list[np.ndarray], score_names: list[str],
    names: list[str], cost_model: Any, grid: Any, *, raw: Predictions | None = None,
    per_class_thresholds: Any = None, full_table: bool = True,
) -> Evaluation:
    if labels is None:
        raise ValueError("labels are required")
    y_raw = np.asarray(labels)
    if y_raw.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y_raw.shape}")
    n = y_raw.shape[0]
    n_stages = len(stages)
    if len(names) != n_stages or len(set(names)) != n_stages:
        raise ValueError(f"stage_names must name the {n_stages} stages distinctly, got {list(names)}")
    last_known = stages[-1] is not None
    stages, classes, k = _class_space(stages, y_raw, names)
    y = label_indices(y_raw, classes, k, what="labels", owner=f"stage {names[0]!r}")
    pred_index = np.full((n_stages, n), -1, dtype=np.int64)
    for s, p in enumerate(stages):
        if p is None:
            continue
        if isinstance(p, Predictions):
            if len(p) != n:
                raise ValueError(f"stage {names[s]!r}: {len(p)} predictions for {n} labels")
            pred_index[s] = p.label_index
        else:
            if np.shape(p) != (n,):
                raise ValueError(f"stage {names[s]!r}: predicted labels must have shape ({n},), got {np.shape(p)}")
            pred_index[s] = label_indices(p, classes, k, what=f"predicted labels of stage {names[s]!r}",
                                          owner=f"stage {names[0]!r}")
    correct = pred_index == y[None, :]
    scores = [checked_scores(s, n, names[i]) if np.shape(s) == (n,) else _shape_error(s, n)
              for i, s in enumerate(score_list)]
    cm = CostModel.coerce(cost_model, n_stages)

    explicit_grid = not isinstance(grid, (int, np.integer))
    if n_stages == 2 and not explicit_grid:
        sweep = threshold_sweep(scores[0], correct[0], correct[1])
        assert sweep.system_correct is not None
        m = sweep.n_accepted
        answered = np.stack([m, n - m], axis=1)
        right = np.stack([sweep.primary_correct, sweep.system_correct - sweep.primary_correct], axis=1)
        grids: tuple[np.ndarray, ...] = (sweep.thresholds,)
        thresholds = sweep.thresholds[:, None]
        order = sweep.order
    else:
        grid_list = grids_for(grid, scores)
        grids = tuple(grid_list)
        if full_table:
            import itertools

            answered, right = cascade_counts(scores, list(correct), grid_list)
            thresholds = np.array(list(itertools.product(*grid_list)), dtype=np.float64).reshape(-1, n_stages - 1)
        else:
            answered = right = np.zeros((0, n_stages), dtype=np.int64)
            thresholds = np.zeros((0, n_stages - 1))
        order = None
    table = _table(thresholds, answered, right, n, cm, last_known)

    stage_accuracy = {names[s]: float(correct[s].mean()) if n else float("nan")
                      for s in range(n_stages) if s < n_stages - 1 or last_known}
    reliability = reliability_raw = None
    if isinstance(stages[0], Predictions) and n:
        reliability = metrics.reliability_table(stages[0].probs, y)
        if raw is not None:
            reliability_raw = metrics.reliability_table(raw.probs, y)
    s0, c0 = scores[0], correct[0]
    if order is None:
        order = np.argsort(-s0, kind="stable")
    aurc = metrics._aurc_sorted(s0[order], ~c0[order]) if n else float("nan")
    eaurc = aurc - metrics.optimal_aurc(n, int((~c0).sum())) if n else float("nan")
    result = Evaluation(
        n=n,
        stage_names=tuple(names),
        score=tuple(score_names[: n_stages - 1]),
        classes=classes,
        exhaustive=n_stages == 2 and not explicit_grid,
        grids=grids,
        table=table,
        stage_accuracy=stage_accuracy,
        cost_model=cm,
        stage_scores=np.stack(scores) if scores else np.empty((0, n)),
        correct=correct,
        stage_label_index=pred_index,
        label_index=y,
        n_classes=k,
        last_known=last_known,
        aurc=aurc,
        eaurc=eaurc,
        ece=None if reliability is None else reliability.ece,
        ece_before_calibration=None if reliability_raw is None else reliability_raw.ece,
        reliability=reliability,
        reliability_before_calibration=reliability_raw,
    )
    if per_class_thresholds is not None:
        result = replace(result, per_class=result.at([per_class_thresholds] + [np.inf] * (n_stages - 2)))
    return result


def _shape_error(s: Any, n: int) -> np.ndarray:
    raise ValueError(f"scores must have shape ({n},) to match the labels, got {np.shape(s)}")


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)] or [(0, 0)]


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
    router: Any, inputs: Any, chunk_size: int, progress: bool | None
) -> tuple[list[Predictions], list[np.ndarray], Predictions | None]:
    """Run each stage once on every input (in chunks, for a progress bar) and score it.

    Returns the stages' calibrated predictions, every non-last stage's scores, and the first
    stage's uncalibrated predictions when it has a calibrator.
    """
    inputs = as_batch(inputs)
    n = n_rows(inputs)
    n_stages = router.n_stages
    raw_ok = router.calibrators[0] is not None
    parts: list[list[Predictions]] = [[] for _ in range(n_stages)]
    raw_parts: list[Predictions] = []
    score_parts: list[list[np.ndarray]] = [[] for _ in range(n_stages - 1)]
    slices = _chunks(n, chunk_size)
    for lo, hi in _progress(slices, len(slices), progress, "evaluate"):
        chunk = slice_rows(inputs, lo, hi)
        uncalibrated = router.stage_predictions(chunk, calibrated=False)
        raw_parts.append(uncalibrated[0])
        preds = [router._calibrated(s, p) for s, p in enumerate(uncalibrated)]
        for s in range(n_stages):
            parts[s].append(preds[s])
        for s in range(n_stages - 1):
            score_parts[s].append(np.asarray(router.stage_score(s, preds[s], chunk), dtype=np.float64))
    stage_preds = [Predictions.concat(p) for p in parts]
    raw = Predictions.concat(raw_parts) if raw_ok else None
    return stage_preds, [np.concatenate(p) for p in score_parts], raw


def evaluate(
    router: Any = None,
    inputs: Any = None,
    labels: Any = None,
    *,
    primary: Any = None,
    fallback: Any = None,
    stages: Sequence[Any] | None = None,
    scores: Any = None,
    score: Any = "max_prob",
    calibrator: Any = None,
    cost_model: Any = None,
    stage_names: Sequence[str] | None = None,
    progress: bool | None = None,
    chunk_size: int = 4096,
    grid: int | Sequence[Any] = 20,
    per_class_thresholds: Any = None,
) -> Evaluation:
    """Measure a routed system at every threshold candidate, running each model once.

    Two ways to call it (the same as :meth:`Evaluation.from_router` and
    :meth:`Evaluation.from_predictions`):

    * ``evaluate(router, inputs, labels)``: runs every stage of a router once on all inputs
      (calibrated and scored as the router does); prices from ``router.cost_model``.
    * ``evaluate(labels=y, stages=[...])`` or ``evaluate(labels=y, primary=..., fallback=...)``:
      from precomputed predictions, for when the models already ran (or run elsewhere).

    Parameters
    ----------
    router : Cascade or ThresholdRouter, optional
    inputs : batch, optional
        The router's inputs; with precomputed predictions, only needed by scores that read inputs.
    labels : array of shape (n,)
        True labels, in the stages' own label space: their class values (``1..4`` for a model
        trained on labels ``1..4``; names for a model with named classes), or column indices for
        models that do not name their classes. Matched by value; a label that is not a class is
        an error naming both sets.
    primary, fallback : Predictions, (n, k) array or (n,) labels, optional
        Two stages' predictions (``fallback=None``: system accuracy is ``nan``).
    stages : sequence, optional
        Every stage's predictions in cascade order, instead of ``primary``/``fallback``.
    scores, score, calibrator, stage_names, grid, per_class_thresholds
        See :meth:`Evaluation.from_predictions`.
    cost_model : CostModel or sequence of float, optional
        Per-input price of each stage.
    progress : bool or None, default None
        Progress bar over chunks of inputs when running a router (``None``: when tqdm is there).
    chunk_size : int, default 4096
        Inputs per ``stage_predictions`` call when running a router.

    Returns
    -------
    Evaluation

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

    Class names are matched by name, whatever each stage's column order:

    >>> a = Predictions.from_probs([[.9, .1], [.2, .8]], ["neg", "pos"])
    >>> b = Predictions.from_probs([[.1, .9], [.8, .2]], ["pos", "neg"])
    >>> evaluate(labels=["neg", "pos"], primary=a, fallback=b).stage_accuracy
    {'primary': 1.0, 'fallback': 1.0}
    """
    if router is not None:
        if primary is not None or fallback is not None or stages is not None or scores is not None:
            raise ValueError("give either a router (with inputs) or precomputed predictions, not both")
        if inputs is None or labels is None:
            raise ValueError("evaluate(router, inputs, labels): inputs and labels are required")
        if calibrator is not None:
            raise ValueError("a router applies its own calibrators; pass calibrator=None")
        if getattr(router, "n_stages", 0) < 2:
            raise ValueError("evaluate() needs a router with at least two stages")
        result = Evaluation.from_router(router, inputs, labels, cost_model=cost_model, grid=grid,
                                        progress=progress, chunk_size=chunk_size,
                                        per_class_thresholds=per_class_thresholds)
        if stage_names is not None:
            result = replace(result, stage_names=tuple(stage_names))
        return result
    if stages is not None:
        if primary is not None or fallback is not None:
            raise ValueError("give stages=[...] or primary/fallback, not both")
    else:
        if primary is None:
            raise ValueError("give a router, or precomputed predictions as stages=[...] or primary=... (and fallback=...)")
        stages = [primary, fallback]
    return Evaluation.from_predictions(
        labels, stages, scores=scores, score=score, calibrator=calibrator, cost_model=cost_model,
        stage_names=stage_names, grid=grid, inputs=inputs, per_class_thresholds=per_class_thresholds,
    )


def evaluate_cascade(
    router: Any = None, inputs: Any = None, labels: Any = None, *, table: bool = True, **kwargs: Any
) -> Evaluation:
    """Deprecated: :func:`evaluate` handles any number of stages."""
    if not table:
        if router is not None:
            stage_preds, scores, _ = _router_arrays(router, inputs, int(kwargs.pop("chunk_size", 4096)),
                                                    kwargs.pop("progress", None))
            cm = kwargs.pop("cost_model", None) or router.cost_model
            return Evaluation.from_predictions(labels, stage_preds, scores=scores, cost_model=cm,
                                               stage_names=router.names, table=False, **kwargs)
        stages = kwargs.pop("stages")
        return Evaluation.from_predictions(labels, stages, table=False, **kwargs)
    return evaluate(router, inputs, labels, **kwargs)
