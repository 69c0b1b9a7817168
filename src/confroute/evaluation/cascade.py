"""N-stage cascades: evaluate every threshold tuple of a grid at once, and search it jointly.

A cascade of ``N`` stages has ``N - 1`` thresholds. Routing is deterministic given the per-stage
scores, so, as for two stages, every stage runs once on every input and the rest is array work:

* each non-last stage ``s`` gets a grid of candidate thresholds: ``grid`` quantiles of its own
  scores (the actual score values, so every candidate is a distinct accept set) plus ``+inf``
  ("accept nothing at this stage");
* for every combination of grid values (``G^(N-1)`` of them) the table holds the share each stage
  answers, the system accuracy, the cost per input and the savings, computed with matrix
  products over 0/1 masks: for a prefix of thresholds, the mask of inputs still pending times the
  mask of inputs stage ``s`` accepts gives, in one ``(combos, n) @ (n, G)`` product, how many
  inputs stage ``s`` answers for every extension of the prefix. Inputs are processed in chunks
  and counts added up, so memory stays at about ``G^(N-1) x chunk`` numbers.

Cost follows :mod:`confroute.core.cost`: every input pays stage 1; an input deferred by stage ``s``
also pays stage ``s + 1``; savings are against sending every input to the last stage.

Joint search (:func:`choose_cascade_thresholds`): exhaustive over the grid (exact on the grid;
``G^(N-1)`` evaluations: 441 for three stages at ``G = 21``, 9,261 for four) or cyclic
coordinate descent (one stage's threshold at a time, all its ``G`` values in one vectorised
pass, until nothing improves: about ``rounds x (N-1) x G`` evaluations, a local optimum).

References
----------
Viola & Jones (2001). Rapid object detection using a boosted cascade of simple features. CVPR
(cascades of increasingly expensive stages).
Clopper & Pearson (1934); Bonferroni correction over the grid for the guarantee (see
:func:`choose_cascade_thresholds`). Hoeffding (1963) for the cost bound.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import _html
from ..core._optional import import_pandas
from ..core.types import Predictions
from .evaluate import _as_predictions, _correct, _json, _score_name, pareto_front, stage_prices
from ..core.scores import checked_scores, resolve_score
from ..selection.thresholds import ThresholdWarning, clopper_pearson

__all__ = [
    "evaluate_cascade",
    "CascadeEvaluation",
    "CascadePoint",
    "CascadeChoice",
    "choose_cascade_thresholds",
    "cascade_counts",
    "quantile_grid",
]

#: Upper bound on the numbers held at once by :func:`cascade_counts` (pending masks, float32).
_MAX_CELLS = 1 << 23


# --------------------------------------------------------------------------- the vectorised core
def quantile_grid(scores: Any, size: int = 20) -> np.ndarray:
    """Candidate thresholds for one stage: ``size`` quantiles of its scores, plus ``+inf``.

    The quantiles are taken with ``method="lower"`` so each candidate is an actual score (a
    distinct accept set); duplicates are dropped. Returned strictest first (``inf`` first).

    Examples
    --------
    >>> quantile_grid([0.1, 0.2, 0.3, 0.4, 0.5], size=3).tolist()
    [inf, 0.5, 0.3, 0.1]
    """
    s = np.asarray(scores, dtype=np.float64)
    if size < 1:
        raise ValueError(f"grid size must be >= 1, got {size}")
    if s.size == 0:
        return np.array([np.inf])
    q = np.quantile(s, np.linspace(0.0, 1.0, size), method="lower") if size > 1 else np.array([s.min()])
    return np.r_[np.inf, np.unique(q)[::-1]]


def cascade_counts(
    scores: Sequence[np.ndarray],
    correct: Sequence[np.ndarray],
    grids: Sequence[np.ndarray],
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs answered by each stage and correct answers, for every threshold combination.

    Parameters
    ----------
    scores : N-1 arrays of shape (n,)
        Score of each non-last stage on every input.
    correct : N arrays of bool, shape (n,)
        Whether each stage is right on every input.
    grids : N-1 arrays
        Candidate thresholds per non-last stage (accept when ``score >= threshold``).
    weights : array of shape (n,), optional
        Count input ``i`` this many times (default 1).

    Returns
    -------
    answered : ndarray of shape (M, N)
        With ``M = prod(len(g) for g in grids)``: rows in lexicographic order of the grid
        indices (the first stage's index varies slowest), as ``itertools.product`` gives them.
    n_correct : ndarray of shape (M,)

    Examples
    --------
    >>> ans, ok = cascade_counts([np.array([0.9, 0.2])], [np.array([True, False]),
    ...                          np.array([True, True])], [np.array([0.5, 0.1])])
    >>> ans.tolist(), ok.tolist()
    ([[1, 1], [2, 0]], [2, 1])
    """
    n_stages = len(correct)
    if len(scores) != n_stages - 1 or len(grids) != n_stages - 1:
        raise ValueError(f"{n_stages} stages need {n_stages - 1} score arrays and grids")
    grids = [np.asarray(g, dtype=np.float64).reshape(-1) for g in grids]
    n = int(np.asarray(correct[0]).shape[0])
    m_total = int(np.prod([g.size for g in grids])) if grids else 1
    w = np.ones(n, dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    answered = np.zeros((m_total, n_stages), dtype=np.float64)
    n_correct = np.zeros(m_total, dtype=np.float64)
    # Counts are sums over inputs, so chunks of inputs add up; the chunk shrinks as combos grow.
    chunk = max(1, min(max(n, 1), _MAX_CELLS // max(m_total, 1)))
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        a, c = _counts_chunk([np.asarray(s)[sl] for s in scores],
                             [np.asarray(c)[sl] for c in correct], grids, w[sl])
        answered += a
        n_correct += c
    if weights is None:
        return np.rint(answered).astype(np.int64), np.rint(n_correct).astype(np.int64)
    return answered, n_correct


def _counts_chunk(
    scores: list[np.ndarray], correct: list[np.ndarray], grids: list[np.ndarray], w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # float64 keeps weighted sums exact enough; 0/1 masks times weights.
    pending = w[None, :].astype(np.float64)  # (combos so far, b): weight of inputs still pending
    per_stage: list[np.ndarray] = []
    ok = np.zeros(1)
    for s, grid in enumerate(grids):
        accept = (scores[s][None, :] >= grid[:, None]).astype(np.float64)  # (G, b)
        g = grid.size
        answered_s = pending @ accept.T  # (M, G)
        correct_s = pending @ (accept * correct[s][None, :]).T
        per_stage = [np.repeat(a, g) for a in per_stage]
        per_stage.append(answered_s.ravel())
        ok = np.repeat(ok, g) + correct_s.ravel()
        pending = (pending[:, None, :] * (1.0 - accept)[None, :, :]).reshape(-1, pending.shape[1])
    per_stage.append(pending.sum(axis=1))
    ok = ok + pending @ correct[-1].astype(np.float64)
    return np.stack(per_stage, axis=1), ok


def _route_arrays(
    scores: Sequence[np.ndarray], thresholds: Sequence[Any], labels: np.ndarray | None = None
) -> np.ndarray:
    """Index of the answering stage per input for one threshold tuple (floats or per-class)."""
    n = np.asarray(scores[0]).shape[0] if scores else 0
    stage = np.full(n, len(scores), dtype=np.int64)
    pending = np.ones(n, dtype=bool)
    for s, t in enumerate(thresholds):
        thr = np.asarray(t, dtype=np.float64)
        if thr.ndim == 1:
            if labels is None:
                raise ValueError("per-class thresholds need the stages' predicted labels")
            thr = thr[labels[s]]
        take = pending & (np.asarray(scores[s]) >= thr)
        stage[take] = s
        pending &= ~take
    return stage


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CascadePoint:
    """The system's figures at one threshold tuple."""

    thresholds: tuple[float, ...]
    shares: tuple[float, ...]
    system_accuracy: float
    cost_per_input: float | None
    savings: float | None
    row: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": [_json(float(t)) for t in self.thresholds],
            "shares": [float(s) for s in self.shares],
            "system_accuracy": _json(self.system_accuracy),
            "cost_per_input": _json(self.cost_per_input),
            "savings": _json(self.savings),
            "row": self.row,
        }


@dataclass(frozen=True, repr=False)
class CascadeEvaluation:
    """Every threshold tuple of a grid, measured: one table row per combination.

    Attributes
    ----------
    n : int
    stage_names : tuple of str
    score : tuple of str
        Score of each non-last stage.
    grids : tuple of ndarray
        Candidate thresholds of each non-last stage, strictest first (``inf`` first).
    table : dict of str to ndarray
        ``thresholds`` (M, N-1), ``answered`` (M, N) counts, ``shares`` (M, N),
        ``n_correct``, ``system_accuracy``, ``cost_per_input`` and ``savings`` (M,); rows in
        lexicographic grid order (first stage slowest). Cost columns are ``nan`` without prices.
    stage_accuracy : dict of str to float
        Each stage alone on all inputs.
    stage_costs : ndarray or None
    scores : ndarray of shape (N-1, n)
    correct : ndarray of bool, shape (N, n)
    stage_labels : ndarray of shape (N, n) or None
        Predicted class indices, when known (for per-class thresholds in :meth:`at`).
    """

    n: int
    stage_names: tuple[str, ...]
    score: tuple[str, ...]
    grids: tuple[np.ndarray, ...]
    table: dict[str, np.ndarray]
    stage_accuracy: dict[str, float]
    stage_costs: np.ndarray | None
    scores: np.ndarray
    correct: np.ndarray
    stage_labels: np.ndarray | None = field(default=None)

    @property
    def n_stages(self) -> int:
        return len(self.stage_names)

    @property
    def n_rows(self) -> int:
        """Rows in the table (0 when evaluated with ``table=False``)."""
        return int(self.table["system_accuracy"].shape[0])

    @property
    def n_candidates(self) -> int:
        """Threshold tuples on the grid: the product of the grid sizes."""
        return int(np.prod([g.size for g in self.grids]))

    @property
    def has_cost(self) -> bool:
        return self.stage_costs is not None

    def _point(self, row: int) -> CascadePoint:
        t = self.table
        return CascadePoint(
            thresholds=tuple(float(v) for v in t["thresholds"][row]),
            shares=tuple(float(v) for v in t["shares"][row]),
            system_accuracy=float(t["system_accuracy"][row]),
            cost_per_input=float(t["cost_per_input"][row]) if self.has_cost else None,
            savings=float(t["savings"][row]) if self.has_cost else None,
            row=int(row),
        )

    def row(self, i: int) -> CascadePoint:
        """Table row ``i`` as a :class:`CascadePoint`."""
        return self._point(int(i))

    def at(self, thresholds: Sequence[Any]) -> CascadePoint:
        """Exact figures at any threshold tuple (grid or not); a threshold may be per-class."""
        thresholds = list(thresholds)
        if len(thresholds) != self.n_stages - 1:
            raise ValueError(f"give {self.n_stages - 1} thresholds, got {len(thresholds)}")
        stage = _route_arrays(list(self.scores), thresholds, self.stage_labels)
        counts = np.bincount(stage, minlength=self.n_stages)
        n_ok = int(self.correct[stage, np.arange(self.n)].sum()) if self.n else 0
        cost = savings = None
        if self.has_cost:
            cost, savings = _cost(counts[None, :].astype(np.float64), self.n, self.stage_costs)
            cost, savings = float(cost[0]), float(savings[0])
        thr = tuple(float(t) if np.ndim(t) == 0 else float("nan") for t in thresholds)
        return CascadePoint(
            thresholds=thr,
            shares=tuple((counts / max(self.n, 1)).tolist()),
            system_accuracy=n_ok / self.n if self.n else float("nan"),
            cost_per_input=cost,
            savings=savings,
        )

    def best(
        self, *, target_system_accuracy: float | None = None, max_cost_per_input: float | None = None
    ) -> CascadePoint:
        """The cheapest row reaching an accuracy, or the most accurate within a budget (on this
        data, no guarantee: see :func:`choose_cascade_thresholds` for that)."""
        return self._point(_best_row(self.table, target_system_accuracy, max_cost_per_input, None, self.n))

    def pareto(self) -> np.ndarray:
        """Rows on the cost / system-accuracy Pareto front, cheapest first."""
        if not self.has_cost:
            raise ValueError("the Pareto front needs stage prices")
        return pareto_front(self.table["cost_per_input"], self.table["system_accuracy"])

    def to_pandas(self) -> Any:
        """One row per threshold tuple (requires pandas)."""
        pd = import_pandas()
        return pd.DataFrame(self._columns())

    def _columns(self) -> dict[str, np.ndarray]:
        t = self.table
        cols: dict[str, np.ndarray] = {}
        for s, name in enumerate(self.stage_names[:-1]):
            cols[f"threshold_{name}"] = t["thresholds"][:, s]
        for s, name in enumerate(self.stage_names):
            cols[f"share_{name}"] = t["shares"][:, s]
        for c in ("system_accuracy", "cost_per_input", "savings"):
            cols[c] = t[c]
        return cols

    def to_dict(self) -> dict[str, Any]:
        """Summary plus the table as lists (JSON-serialisable; ``inf`` becomes ``None``)."""
        return {
            "n": self.n,
            "stage_names": list(self.stage_names),
            "score": list(self.score),
            "stage_accuracy": {k: _json(v) for k, v in self.stage_accuracy.items()},
            "stage_costs": None if self.stage_costs is None else [float(c) for c in self.stage_costs],
            "grids": [[_json(float(v)) for v in g] for g in self.grids],
            "table": {k: [_json(float(v)) for v in col] for k, col in self._columns().items()},
        }

    def _repr_html_(self) -> str:
        return _html.cascade_evaluation_html(self)

    def __repr__(self) -> str:
        lines = [
            f"CascadeEvaluation(n={self.n}, stages={list(self.stage_names)}, "
            f"{self.n_rows} threshold tuples)"
        ]
        acc = "   ".join(f"{k} alone {v:.4f}" for k, v in self.stage_accuracy.items())
        lines.append(f"  accuracy: {acc}")
        if self.n_rows == 0:
            lines.append(f"  (no table: {self.n_candidates} threshold tuples on the grid)")
            return "\n".join(lines)
        rows = self.pareto() if self.has_cost else np.argsort(-self.table["system_accuracy"])[:8]
        if rows.size > 10:
            rows = rows[np.unique(np.linspace(0, rows.size - 1, 10).round().astype(int))]
        lines.append("  " + ("Pareto front" if self.has_cost else "most accurate") + ":")
        for r in rows:
            p = self._point(int(r))
            thr = ", ".join(f"{v:.4g}" for v in p.thresholds)
            sh = "/".join(f"{v:.0%}" for v in p.shares)
            row = f"    [{thr}]  answered {sh}  acc {p.system_accuracy:.4f}"
            if p.cost_per_input is not None:
                row += f"  cost/input {p.cost_per_input:.4g}  savings {p.savings:.1%}"
            lines.append(row)
        return "\n".join(lines)


def _cost(answered: np.ndarray, n: int, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cost per input and savings from answered counts (M, N): stage s is paid by everyone not
    answered before it."""
    before = np.cumsum(answered, axis=1) - answered
    reached = n - before
    total = reached @ prices
    per_input = total / n if n else np.full(answered.shape[0], np.nan)
    baseline = n * prices[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        savings = 1.0 - total / baseline if baseline else np.full(answered.shape[0], np.nan)
    return per_input, savings


def _make_table(
    grids: Sequence[np.ndarray], answered: np.ndarray, n_correct: np.ndarray, n: int,
    prices: np.ndarray | None,
) -> dict[str, np.ndarray]:
    combos = np.array(list(itertools.product(*grids)), dtype=np.float64)
    combos = combos.reshape(answered.shape[0], len(grids))
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = answered / n if n else np.zeros(answered.shape)
        acc = n_correct / n if n else np.full(n_correct.shape, np.nan)
    if prices is not None:
        cost, savings = _cost(answered.astype(np.float64), n, prices)
    else:
        cost = savings = np.full(n_correct.shape, np.nan)
    return {
        "thresholds": combos,
        "answered": answered,
        "shares": shares,
        "n_correct": n_correct,
        "system_accuracy": acc,
        "cost_per_input": cost,
        "savings": savings,
    }


# --------------------------------------------------------------------------- evaluate_cascade()
def evaluate_cascade(
    router: Any = None,
    inputs: Any = None,
    labels: Any = None,
    *,
    stages: Sequence[Any] | None = None,
    scores: Sequence[Any] | None = None,
    score: Any = "max_prob",
    cost_model: Any = None,
    grid: int | Sequence[Any] = 20,
    stage_names: Sequence[str] | None = None,
    progress: bool | None = None,
    chunk_size: int = 4096,
    table: bool = True,
) -> CascadeEvaluation:
    """Measure an N-stage cascade at every threshold tuple of a grid, running each stage once.

    Two ways to call it, as for :func:`~confroute.evaluate` (which calls this for cascades of
    more than two stages):

    * ``evaluate_cascade(cascade, inputs, labels)``: runs every stage of a
      :class:`~confroute.Cascade` once on all inputs (``cascade.stage_predictions``, calibrated
      as the cascade calibrates), scores each stage with the cascade's scores and prices with
      ``cascade.cost_model``.
    * ``evaluate_cascade(labels=y, stages=[p1, p2, p3], cost_model=...)``: from precomputed
      per-stage :class:`~confroute.Predictions`, probability matrices or (last stage, or with
      ``scores``) predicted labels.

    Parameters
    ----------
    router : Cascade, optional
    inputs : sequence, optional
    labels : array of shape (n,)
    stages : sequence of Predictions or arrays, optional
    scores : sequence of arrays of shape (n,), optional
        Precomputed score of each non-last stage (default: ``score`` applied to its predictions).
    score : str, callable or PredictionScore, or a list (one per non-last stage)
    cost_model : CostModel or sequence of float, optional
    grid : int or sequence of arrays, default 20
        Quantiles per stage (see :func:`quantile_grid`), or the candidate thresholds of each
        non-last stage. The table has ``prod(len(grid_s))`` rows: about ``(G+1)^(N-1)``.
    stage_names : sequence of str, optional
    progress : bool or None
    chunk_size : int, default 4096
    table : bool, default True
        ``False`` skips the full table (it has ``G^(N-1)`` rows) and keeps only the per-stage
        arrays and grids: enough for :meth:`CascadeEvaluation.at` and for
        ``choose_cascade_thresholds(..., method="coordinate")`` on deep cascades.

    Returns
    -------
    CascadeEvaluation

    Examples
    --------
    >>> y = np.array([0, 0, 1, 1])
    >>> p1 = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.7, 0.3]])
    >>> p2 = np.array([[0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.6, 0.4]])
    >>> res = evaluate_cascade(labels=y, stages=[p1, p2, np.array([0, 0, 1, 1])],
    ...                        cost_model=[1.0, 2.0, 10.0], grid=[[0.8], [0.75]])
    >>> p = res.row(0)  # stage 1 keeps 0.9; stage 2 keeps 0.9 and 0.8; the last gets 0.7's input
    >>> p.shares, p.system_accuracy  # stage 2 gets its second input wrong
    ((0.25, 0.5, 0.25), 0.75)
    >>> p.cost_per_input, p.savings  # (4 x 1 + 3 x 2 + 1 x 10) / 4; 1 - 20 / (4 x 10)
    (5.0, 0.5)
    """
    if router is not None:
        if stages is not None or scores is not None:
            raise ValueError("give either a cascade (with inputs) or precomputed stages, not both")
        if inputs is None or labels is None:
            raise ValueError("evaluate_cascade(cascade, inputs, labels): inputs and labels are required")
        from .evaluate import _router_arrays

        stage_preds, score_list, _ = _router_arrays(router, inputs, int(chunk_size), progress,
                                                    all_scores=True)
        names = tuple(stage_names or getattr(router, "names", None) or _names(len(stage_preds)))
        cm = cost_model if cost_model is not None else getattr(router, "cost_model", None)
        sc = getattr(router, "score", "max_prob")
        specs_r = sc if isinstance(sc, (list, tuple)) else [sc] * len(names)
        score_names = tuple(_score_name(x) for x in specs_r)
        stage_list: list[Any] = list(stage_preds)
    else:
        if stages is None or labels is None:
            raise ValueError("give a cascade with inputs and labels, or stages=[...] and labels=...")
        stage_list = [_as_predictions(p, f"stage {i}") for i, p in enumerate(stages)]
        if len(stage_list) < 2:
            raise ValueError(f"a cascade to evaluate needs at least 2 stages, got {len(stage_list)}")
        names = tuple(stage_names or _names(len(stage_list)))
        n_score = len(stage_list) - 1
        if scores is not None:
            score_list = [np.asarray(s, dtype=np.float64) for s in scores]
            if len(score_list) not in (n_score, n_score + 1):
                raise ValueError(
                    f"give {n_score} score arrays (one per non-last stage), got {len(score_list)}"
                )
            score_list = score_list[:n_score]
            score_names = tuple(["scores"] * len(stage_list))
        else:
            specs = list(score) if isinstance(score, (list, tuple)) else [score] * n_score
            if len(specs) < n_score:
                raise ValueError(f"give one score per non-last stage ({n_score}), got {len(specs)}")
            score_list = []
            for s in range(n_score):
                if not isinstance(stage_list[s], Predictions):
                    raise ValueError(f"stage {s} is a label vector: give its confidence in scores=[...]")
                values = resolve_score(specs[s])(stage_list[s], inputs)
                score_list.append(np.asarray(values, dtype=np.float64))
            score_names = tuple(_score_name(x) for x in specs[:n_score]) + ("-",)
        cm = cost_model

    n_stages = len(stage_list)
    if len(names) != n_stages:
        raise ValueError(f"stage_names must name {n_stages} stages, got {list(names)}")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    n = y.shape[0]
    score_list = [checked_scores(s, n, names[i]) for i, s in enumerate(score_list)]
    correct = np.stack([_correct(p, y, names[i], n) for i, p in enumerate(stage_list)]) if n_stages else None
    prices = stage_prices(cm, n_stages)
    grids = _grids(grid, score_list)
    if table:
        answered, n_correct = cascade_counts(score_list, list(correct), grids)
    else:
        answered, n_correct = np.zeros((0, n_stages), dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows = _make_table([g[:0] for g in grids] if not table else grids, answered, n_correct, n, prices)
    stage_labels = None
    if all(isinstance(p, Predictions) for p in stage_list[:-1]):
        last = stage_list[-1]
        last_labels = last.labels if isinstance(last, Predictions) else np.full(n, -1)
        stage_labels = np.stack([p.labels for p in stage_list[:-1]] + [last_labels])
    return CascadeEvaluation(
        n=n,
        stage_names=names,
        score=tuple(score_names[: n_stages - 1]),
        grids=tuple(grids),
        table=rows,
        stage_accuracy={names[i]: float(correct[i].mean()) if n else float("nan") for i in range(n_stages)},
        stage_costs=prices,
        scores=np.stack(score_list) if score_list else np.empty((0, n)),
        correct=correct,
        stage_labels=stage_labels,
    )


def _names(k: int) -> list[str]:
    return [f"stage{i}" for i in range(k)]


def _grids(grid: int | Sequence[Any], scores: list[np.ndarray]) -> list[np.ndarray]:
    if isinstance(grid, (int, np.integer)):
        return [quantile_grid(s, int(grid)) for s in scores]
    grids = [np.asarray(g, dtype=np.float64).reshape(-1) for g in grid]
    if len(grids) != len(scores):
        raise ValueError(f"give one threshold grid per non-last stage ({len(scores)}), got {len(grids)}")
    for i, g in enumerate(grids):
        if g.size == 0 or np.isnan(g).any():
            raise ValueError(f"threshold grid of stage {i} must be non-empty and free of NaN")
    return grids


# --------------------------------------------------------------------------- joint search
@dataclass(frozen=True)
class CascadeChoice:
    """Jointly chosen thresholds, what they achieve on the data, and what is guaranteed.

    Attributes
    ----------
    thresholds : list of float
        One per non-last stage; pass to ``Cascade(..., thresholds=choice.thresholds)``. ``inf``
        means "this stage accepts nothing".
    objective : {"system_accuracy", "cost"}
    target : float
    delta : float or None
    feasible : bool
    method : {"exhaustive", "coordinate"}
    n_evaluated : int
        Threshold tuples evaluated by the search.
    n_candidates : int
        Size of the grid (the Bonferroni factor of the guarantee).
    system_accuracy, cost_per_input, savings : float
        On the data the choice was made on (cost figures are ``nan`` without prices).
    accuracy_bound : float or None
        Lower bound on system accuracy holding with probability ``1 - delta``.
    cost_bound : float or None
        Upper bound on the mean cost per input holding with probability ``1 - delta``.
    shares : tuple of float
        Share of inputs each stage answers.
    """

    thresholds: list[float]
    objective: str
    target: float
    delta: float | None
    feasible: bool
    method: str
    n_evaluated: int
    n_candidates: int
    system_accuracy: float
    cost_per_input: float
    savings: float
    accuracy_bound: float | None
    cost_bound: float | None
    shares: tuple[float, ...]

    def _repr_html_(self) -> str:
        return _html.cascade_choice_html(self)

    def to_dict(self) -> dict[str, Any]:
        out = {k: _json(v) if isinstance(v, float) else v for k, v in self.__dict__.items()}
        out["thresholds"] = [_json(float(t)) for t in self.thresholds]
        out["shares"] = list(self.shares)
        return out


def _bounds(
    table: dict[str, np.ndarray], n: int, prices: np.ndarray | None, level: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row lower bound on accuracy and upper bound on cost per input (or the empirical
    figures when ``level`` is None)."""
    acc = table["system_accuracy"]
    cost = table["cost_per_input"]
    if level is None:
        return acc, cost
    errors = n - table["n_correct"]
    acc_lo = 1.0 - clopper_pearson(errors, np.full(errors.shape, n), level, "upper")
    if prices is None:
        return acc_lo, cost
    # Per-input cost lies in [price of stage 1, sum of all prices]: Hoeffding.
    spread = float(prices.sum() - prices[0])
    cost_hi = cost + spread * math.sqrt(math.log(1.0 / level) / (2.0 * n))
    return acc_lo, cost_hi


def _best_row(
    table: dict[str, np.ndarray], target_acc: float | None, budget: float | None,
    bounds: tuple[np.ndarray, np.ndarray] | None, n: int,
) -> int:
    """Row index of the best feasible row; -1 - (safe row) when none is feasible."""
    if (target_acc is None) == (budget is None):
        raise ValueError("give exactly one of target_system_accuracy, max_cost_per_input")
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
        ok = cost_b <= budget + 1e-12
        key = np.lexsort((cost, -acc))
    feasible = key[ok[key]]
    if feasible.size:
        return int(feasible[0])
    # Safe end: the most accurate row (accuracy target) or the cheapest (budget).
    safe = np.lexsort((cost, -acc))[0] if target_acc is not None else np.lexsort((-acc, cost))[0]
    return -1 - int(safe)


def choose_cascade_thresholds(
    data: CascadeEvaluation,
    *,
    target_system_accuracy: float | None = None,
    max_cost_per_input: float | None = None,
    delta: float | None = 0.05,
    method: str = "exhaustive",
    max_rounds: int = 10,
) -> CascadeChoice:
    """Choose all thresholds of a cascade jointly, over the grid of a :class:`CascadeEvaluation`.

    Objectives (give exactly one):

    ``target_system_accuracy``
        The cheapest tuple whose system accuracy is at least the target.
    ``max_cost_per_input``
        The most accurate tuple whose mean cost per input is within the budget.

    Parameters
    ----------
    data : CascadeEvaluation
        From :func:`evaluate_cascade` on calibration data (not on what you report).
    target_system_accuracy, max_cost_per_input : float
    delta : float or None, default 0.05
        With a number, the constraint must hold with probability ``1 - delta`` on new data from
        the same distribution: the accuracy constraint uses the Clopper–Pearson lower bound on
        system accuracy (``n`` trials), the budget uses a Hoeffding upper bound on the mean cost
        (per-input cost lies between the first stage's price and the sum of all prices), both at
        level ``delta / n_candidates`` (Bonferroni over every tuple of the grid, so the bound
        holds whichever tuple the search picks; the grid's quantiles come from the same data, a
        mild dependence we accept, as Learn-then-Test does for data-driven grids). ``None``:
        purely empirical.
    method : {"exhaustive", "coordinate"}
        ``"exhaustive"`` checks every tuple (``G^(N-1)``; exact on the grid).
        ``"coordinate"`` runs cyclic coordinate descent from the safe end (everything to the
        last stage for an accuracy target, everything answered by stage 1 for a budget),
        re-optimising one stage's threshold at a time over its whole grid, for at most
        ``max_rounds`` rounds: ``O(rounds x N x G)`` evaluations, a local optimum that stays
        feasible whenever the start is.
    max_rounds : int, default 10

    Returns
    -------
    CascadeChoice
        When nothing is feasible, a :class:`~confroute.selection.thresholds.ThresholdWarning` is issued,
        ``feasible`` is False and the safe end is returned (the most accurate tuple for an
        accuracy target, the cheapest for a budget).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> n = 2000
    >>> y = rng.integers(0, 2, n)
    >>> def stage(noise):  # a noisier stage is less accurate and less confident
    ...     p = 1 / (1 + np.exp(-(2 * y - 1) * 3 + rng.normal(0, noise, n)))
    ...     return np.c_[1 - p, p]
    >>> res = evaluate_cascade(labels=y, stages=[stage(6), stage(4), stage(1)],
    ...                        cost_model=[1.0, 3.0, 20.0], grid=15)
    >>> c = choose_cascade_thresholds(res, target_system_accuracy=0.9, delta=0.05)
    >>> c.feasible, c.accuracy_bound >= 0.9, c.cost_per_input < 20
    (True, True, True)
    >>> cd = choose_cascade_thresholds(res, target_system_accuracy=0.9, method="coordinate")
    >>> cd.feasible, cd.n_evaluated < c.n_evaluated, cd.cost_per_input >= c.cost_per_input
    (True, True, True)
    """
    if (target_system_accuracy is None) == (max_cost_per_input is None):
        raise ValueError("give exactly one of target_system_accuracy, max_cost_per_input")
    if target_system_accuracy is not None and not 0 < target_system_accuracy <= 1:
        raise ValueError(f"target_system_accuracy must lie in (0, 1], got {target_system_accuracy}")
    if delta is not None and not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1) or be None, got {delta}")
    if data.n == 0:
        raise ValueError("choose_cascade_thresholds needs at least one calibration input")
    if max_cost_per_input is not None and not data.has_cost:
        raise ValueError("max_cost_per_input needs stage prices (cost_model)")
    n_candidates = data.n_candidates
    level = None if delta is None else delta / n_candidates
    prices = data.stage_costs

    if method == "exhaustive":
        if data.n_rows != n_candidates:
            raise ValueError("exhaustive search needs the full table: evaluate_cascade(..., table=True), "
                             "or use method='coordinate'")
        table = data.table
        bounds = _bounds(table, data.n, prices, level)
        row = _best_row(table, target_system_accuracy, max_cost_per_input, bounds, data.n)
        n_eval = n_candidates
    elif method == "coordinate":
        table, bounds, row, n_eval = _coordinate(data, target_system_accuracy, max_cost_per_input,
                                                 level, max_rounds)
    else:
        raise ValueError(f"method must be 'exhaustive' or 'coordinate', got {method!r}")

    feasible = row >= 0
    r = row if feasible else -1 - row
    objective = "system_accuracy" if target_system_accuracy is not None else "cost"
    target = float(target_system_accuracy if target_system_accuracy is not None else max_cost_per_input)
    if not feasible:
        warnings.warn(
            f"no threshold tuple meets the {objective.replace('_', ' ')} target {target:g}"
            + ("" if delta is None else f" with probability {1 - delta:g}")
            + f" on {data.n} inputs; returning the safe end",
            ThresholdWarning,
            stacklevel=2,
        )
    return CascadeChoice(
        thresholds=[float(t) for t in table["thresholds"][r]],
        objective=objective,
        target=target,
        delta=delta,
        feasible=feasible,
        method=method,
        n_evaluated=int(n_eval),
        n_candidates=int(n_candidates),
        system_accuracy=float(table["system_accuracy"][r]),
        cost_per_input=float(table["cost_per_input"][r]),
        savings=float(table["savings"][r]),
        accuracy_bound=None if level is None else float(bounds[0][r]),
        cost_bound=None if level is None or prices is None else float(bounds[1][r]),
        shares=tuple(float(v) for v in table["shares"][r]),
    )


def _coordinate(
    data: CascadeEvaluation, target_acc: float | None, budget: float | None, level: float | None,
    max_rounds: int,
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray], int, int]:
    """Cyclic coordinate descent over grid indices; returns a one-row table of the result."""
    grids = data.grids
    # Safe start: accept nothing anywhere (accuracy target) or accept everything at stage 1.
    if target_acc is not None:
        idx = [0] * len(grids)  # grids are strictest first
    else:
        idx = [g.size - 1 for g in grids]
    scores, correct = list(data.scores), list(data.correct)
    n_eval = 0

    def evaluate_line(s: int) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        line = [g[[i]] for g, i in zip(grids, idx)]
        line[s] = grids[s]
        answered, ok = cascade_counts(scores, correct, line)
        table = _make_table(line, answered, ok, data.n, data.stage_costs)
        return table, _bounds(table, data.n, data.stage_costs, level)

    for _ in range(max(1, max_rounds)):
        changed = False
        for s in range(len(grids)):
            table, bounds = evaluate_line(s)
            n_eval += grids[s].size
            row = _best_row(table, target_acc, budget, bounds, data.n)
            pick = row if row >= 0 else -1 - row
            if pick != idx[s]:
                # Move only when it is strictly better than staying, so the search terminates.
                if _better(table, bounds, pick, idx[s], target_acc, budget):
                    idx[s] = pick
                    changed = True
        if not changed:
            break
    final_grid = [g[[i]] for g, i in zip(grids, idx)]
    answered, ok = cascade_counts(scores, correct, final_grid)
    table = _make_table(final_grid, answered, ok, data.n, data.stage_costs)
    bounds = _bounds(table, data.n, data.stage_costs, level)
    row = _best_row(table, target_acc, budget, bounds, data.n)
    return table, bounds, row, n_eval


def _better(
    table: dict[str, np.ndarray], bounds: tuple[np.ndarray, np.ndarray], a: int, b: int,
    target_acc: float | None, budget: float | None,
) -> bool:
    """Is row ``a`` strictly better than row ``b`` for the objective (feasibility first)?"""
    acc, cost = table["system_accuracy"], table["cost_per_input"]
    acc_b, cost_b = bounds
    if target_acc is not None:
        if np.isnan(cost).all():
            cost = -(table["shares"] * np.arange(table["shares"].shape[1], 0, -1)).sum(axis=1)
        fa, fb = acc_b[a] >= target_acc - 1e-12, acc_b[b] >= target_acc - 1e-12
        if fa != fb:
            return bool(fa)
        if not fa:
            return bool(acc[a] > acc[b])
        return bool(cost[a] < cost[b] or (cost[a] == cost[b] and acc[a] > acc[b]))
    assert budget is not None
    fa, fb = cost_b[a] <= budget + 1e-12, cost_b[b] <= budget + 1e-12
    if fa != fb:
        return bool(fa)
    if not fa:
        return bool(cost[a] < cost[b])
    return bool(acc[a] > acc[b] or (acc[a] == acc[b] and cost[a] < cost[b]))
