"""The result of an evaluation: :class:`Evaluation`, one type for any number of stages.

It holds one table row per threshold candidate (see :mod:`confroute.evaluation.table`), the
arrays it was counted from, and the headline figures; :meth:`Evaluation.at` gives the exact
figures at any thresholds through the library's one decision rule
(:func:`confroute.core.decision.answering_stage`) and the one price rule
(:meth:`CostModel.per_input <confroute.CostModel.per_input>`). The arrays are built by
:mod:`confroute.evaluation.build`; the text display is :mod:`confroute.evaluation.display`; the
figures are the Display objects of :mod:`confroute.evaluation.plotting`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..calibration import metrics
from ..core import _html, decision
from ..core._deprecation import renamed_attribute
from ..core._json import json_value
from ..core._optional import import_pandas
from ..core.choice import stage_thresholds
from ..core.classes import Classes, class_labels
from ..core.cost import CostModel
from . import plotting
from .alternatives import ParetoComparison, compare_to_alternatives
from .build import fields_from_predictions, fields_from_router
from .display import evaluation_text
from .sweep import pareto_front
from .table import TABLE_COLUMNS, OperatingPoint, best_row, table_from_counts

__all__ = ["Evaluation"]


@dataclass(frozen=True, repr=False)
class Evaluation:
    """A routed system measured on labelled data, at every threshold candidate at once.

    Build it with :func:`~confroute.evaluate`, :meth:`from_router` (run the router's stages once)
    or :meth:`from_predictions` (stages that already ran). One type for any number of stages.

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
        The point at the ``per_class_thresholds`` given to :func:`~confroute.evaluate`.
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
        table: bool = True,
    ) -> Evaluation:
        """Run every stage of ``router`` once on all inputs (calibrated and scored as the router
        does) and evaluate. Prices come from ``router.cost_model`` unless given; the other
        parameters are those of :meth:`from_predictions`."""
        fields = fields_from_router(router, inputs, labels, cost_model=cost_model, grid=grid,
                                    progress=progress, chunk_size=chunk_size, table=table)
        return cls(**fields)._with_per_class(per_class_thresholds)

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
        fields = fields_from_predictions(
            labels, stages, scores=scores, score=score, calibrator=calibrator, cost_model=cost_model,
            stage_names=stage_names, grid=grid, inputs=inputs, table=table,
        )
        return cls(**fields)._with_per_class(per_class_thresholds)

    def _with_per_class(self, per_class_thresholds: Any) -> Evaluation:
        if per_class_thresholds is None:
            return self
        return replace(self, per_class=self.at([per_class_thresholds] + [np.inf] * (self.n_stages - 2)))

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
    def row_thresholds(self) -> np.ndarray:
        """The first stage's threshold of each table row (one per row, not one per stage)."""
        return self.table["thresholds"][:, 0]

    thresholds = renamed_attribute("row_thresholds")  # deprecated name (goes in 0.3)

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
    def primary_label_index(self) -> np.ndarray:
        """The first stage's predicted column per input."""
        return self.stage_label_index[0]

    primary_labels = renamed_attribute("primary_label_index")  # deprecated name (goes in 0.3)

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

    def row_at(self, threshold: float) -> int:
        """Two stages: the table row that accepts exactly what ``threshold`` accepts."""
        if not self.exhaustive:
            raise ValueError("row_at needs the exact two-stage table; use at(thresholds) on a grid")
        accepted = int(decision.accepts(self.scores, None, float(threshold)).sum())
        return int(np.searchsorted(self.table["n_accepted"], accepted, side="left"))

    def row(self, i: int) -> OperatingPoint:
        """Table row ``i`` as an :class:`~confroute.OperatingPoint`."""
        i = int(i)
        return OperatingPoint.from_table(self.table, i, self.n, has_cost=self.has_cost,
                                         last_known=self.last_known, row=i)

    def at(self, thresholds: Any) -> OperatingPoint:
        """Exact figures at any thresholds, on the grid or not.

        ``thresholds`` is one threshold per non-last stage (a number for two stages is enough),
        or a threshold choice, read through :func:`confroute.core.choice.stage_thresholds` (an
        evaluation or a sweep, which hold one threshold per *table row*, is a ``TypeError``). A
        stage's threshold may be per class: an array in column order or a mapping from class
        value to threshold, as for the router. The answering stage comes from the library's one
        decision rule, the cost from :meth:`CostModel.per_input <confroute.CostModel.per_input>`.

        Examples
        --------
        >>> from confroute import evaluate
        >>> res = evaluate(labels=[0, 1, 1, 0], primary=[[.9, .1], [.3, .7], [.6, .4], [.45, .55]],
        ...                fallback=[0, 1, 1, 1], cost_model=[1.0, 10.0])
        >>> p = res.at(0.65)
        >>> p.coverage, p.accepted_accuracy, p.system_accuracy, p.cost, p.savings
        (0.5, 1.0, 0.75, 24.0, 0.4)
        """
        values = stage_thresholds(thresholds, "Evaluation.at")
        if isinstance(values, dict) or np.ndim(values) == 0:
            values = [values]
        values = list(values)
        if self.n_stages == 2 and len(values) != 1 and all(np.ndim(v) == 0 for v in values):
            values = [np.asarray(values, dtype=np.float64)]  # a bare per-class array for 2 stages
        if len(values) != self.n_stages - 1:
            raise ValueError(f"give {self.n_stages - 1} threshold(s), one per non-last stage, got {len(values)}")
        resolved = [
            decision.resolve_threshold(decision.check_threshold(v, None, f"threshold of stage {s}"), self.classes,
                                       self.n_classes, f"stage {self.stage_names[s]!r}")
            for s, v in enumerate(values)
        ]
        stage = decision.answering_stage(list(self.stage_scores), resolved, list(self.stage_label_index[:-1]))
        return self._point(stage, resolved)

    def _point(self, stage: np.ndarray, resolved: Sequence[float | np.ndarray]) -> OperatingPoint:
        n, k = self.n, self.n_stages
        answered = np.bincount(stage, minlength=k)
        right = self.correct[stage, np.arange(n)] if n else np.zeros(0, dtype=bool)
        correct = np.bincount(stage, weights=right.astype(np.float64), minlength=k)
        cost = None
        if self.cost_model is not None:  # an input answered by stage s reached stages 0..s
            reached = np.arange(k)[:, None] <= stage[None, :]
            cost = np.array([self.cost_model.per_input(reached).sum()])
        table = table_from_counts(np.zeros((1, k - 1)), answered[None, :], correct[None, :], n,
                                  self.cost_model, self.last_known, cost=cost)
        per_class = tuple(None if np.ndim(t) == 0 else tuple(float(v) for v in np.asarray(t)) for t in resolved)
        return OperatingPoint.from_table(
            table, 0, n, has_cost=self.has_cost, last_known=self.last_known,
            thresholds=tuple(float(t) if np.ndim(t) == 0 else float("nan") for t in resolved),
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
    ) -> ParetoComparison:
        """The routed operating points (the Pareto front of this table) beside single models on
        one accuracy-vs-cost front, with a sentence saying whether routing is on it.

        Each stage alone is always included, at its own price (the last stage alone does not pay
        the first); ``alternatives`` adds other models measured on the same inputs, as
        ``{name: (cost per input, accuracy)}`` (e.g. the fallback quantised to int8).
        """
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
        rows = self.spread_rows(max_rows) if max_rows is not None else slice(None)
        out = self.summary()
        out["table"] = {c: [json_value(v) for v in col[rows].tolist()] for c, col in self._columns().items()}
        if self.per_class is not None:
            out["per_class"] = self.per_class.to_dict()
        return out

    def spread_rows(self, k: int) -> np.ndarray:
        """At most ``k`` table rows, evenly spread over coverage (the first and last included)."""
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
        """One figure by name, drawn by the Display objects of :mod:`confroute.evaluation.plotting`.

        A convenience for scripts and the CLI's ``--plot KIND``; in code, prefer the Displays
        (``RiskCoverageDisplay.from_evaluation(ev, ax=ax)`` and so on), which keep the artists.

        Parameters
        ----------
        kind : str, default "summary"
            ``"summary"`` (the three figures side by side; returns a Figure), or one of
            ``"accuracy_vs_threshold"``, ``"cost_vs_threshold"``, ``"accuracy_vs_cost"``,
            ``"risk_coverage"``, ``"accuracy_coverage"``, ``"reliability"`` (each returns Axes).
        ax : matplotlib Axes, optional
        path : str or Path, optional
            Also save the figure there as PNG.
        """
        return plotting.plot_result(self, kind=kind, ax=ax, path=path, **kwargs)

    def _repr_html_(self) -> str:
        return _html.evaluation_html(self)

    def __repr__(self) -> str:
        return evaluation_text(self)
