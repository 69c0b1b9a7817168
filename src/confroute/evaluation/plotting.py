"""Figures for evaluation results, as scikit-learn-style Display objects.

Each Display holds the numbers it draws; ``Display.from_evaluation(ev, ax=None)`` (and
``from_predictions`` where that is natural) computes them and draws; ``plot(ax=None)`` draws
them again on any Axes. After drawing, the matplotlib artists are attributes: ``ax_``,
``figure_``, ``line_`` (and a few more per Display). ``save(path)`` writes a PNG.

* :class:`AccuracyThresholdDisplay`: accuracy on accepted inputs, system accuracy and coverage
  against the threshold;
* :class:`CostThresholdDisplay`: cost per input against the threshold;
* :class:`CostAccuracyDisplay`: system accuracy against cost, the Pareto front marked;
* :class:`RiskCoverageDisplay`: the risk-coverage (or accuracy-coverage) curve of a score;
* :class:`ReliabilityDisplay`: the reliability diagram.

matplotlib (the ``plot`` extra) is imported on first use. For scripts and tests without a display,
select matplotlib's Agg backend first (``matplotlib.use("Agg")``). The functions
``plot_accuracy_vs_threshold`` and friends draw one Display and return its Axes;
:func:`plot_summary` puts the study's three figures side by side.

The Displays read an evaluation's public attributes only (duck typing): this module imports
nothing from :mod:`confroute.evaluation.result`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import metrics
from ..core._deprecation import renamed_keyword
from ..core.choice import stage_thresholds

__all__ = [
    "AccuracyThresholdDisplay",
    "CostThresholdDisplay",
    "CostAccuracyDisplay",
    "RiskCoverageDisplay",
    "ReliabilityDisplay",
    "plot_accuracy_vs_threshold",
    "plot_cost_vs_threshold",
    "plot_accuracy_vs_cost",
    "plot_risk_coverage",
    "plot_reliability",
    "plot_summary",
    "plot_result",
    "new_axes",
    "finish",
    "save",
]

#: Line plots of results with more rows than this are thinned (evenly over coverage).
MAX_POINTS = 2000


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("plotting needs matplotlib: pip install 'confroute[plot]'") from None
    return plt


def new_axes(ax: Any = None, figsize: tuple[float, float] = (5.0, 3.6)) -> Any:
    """``ax``, or the Axes of a new figure."""
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def save(obj: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save the figure of ``obj`` (a Figure, Axes or Display) as PNG; returns the path."""
    obj = getattr(obj, "figure_", obj)
    fig = obj.get_figure() if hasattr(obj, "get_figure") and not hasattr(obj, "savefig") else obj
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def finish(obj: Any, path: str | Path | None) -> Any:
    """Save ``obj``'s figure when ``path`` is given; return ``obj``."""
    if path is not None:
        save(obj, path)
    return obj


def _threshold(choice: Any) -> float | None:
    """The first stage's threshold of a threshold choice (read through the one unwrap,
    :func:`~confroute.core.choice.stage_thresholds`), of a list of them, or a number; ``None``
    when there is no single finite threshold to mark (per-class thresholds, ``inf``)."""
    if choice is None:
        return None
    values = stage_thresholds(choice, "choice")
    first = values[0] if isinstance(values, (list, tuple)) else values
    if np.ndim(first) != 0:
        return None
    t = float(first)
    return t if np.isfinite(t) else None


class _Display:
    """What every Display shares: the Axes and Figure it drew on, and saving them."""

    ax_: Any
    figure_: Any

    def _axes(self, ax: Any, figsize: tuple[float, float] = (5.0, 3.6)) -> Any:
        self.ax_ = new_axes(ax, figsize)
        self.figure_ = self.ax_.figure
        return self.ax_

    def save(self, path: str | Path, dpi: int = 110) -> Path:
        """Save the figure as PNG (after :meth:`plot`)."""
        return save(self.figure_, path, dpi)


def _rows(ev: Any, finite_threshold: bool = False) -> np.ndarray:
    rows = np.arange(ev.n_rows) if ev.n_rows <= MAX_POINTS else ev.spread_rows(MAX_POINTS)
    if finite_threshold:
        rows = rows[np.isfinite(ev.table["threshold"][rows])]
    return rows


def _need_cost(ev: Any) -> None:
    if not ev.has_cost:
        raise ValueError("this plot needs stage prices: evaluate(..., cost_model=...)")


class AccuracyThresholdDisplay(_Display):
    """Accuracy on accepted inputs, system accuracy and coverage against the threshold.

    Attributes (after :meth:`plot`): ``ax_``, ``figure_``, ``line_`` (accuracy on accepted),
    ``system_line_`` and ``fallback_line_`` (``None`` without the fallback's answers),
    ``coverage_line_``, ``chosen_line_`` (``None`` without a chosen threshold).
    """

    def __init__(
        self, threshold: Any, accepted_accuracy: Any, coverage: Any, *, system_accuracy: Any = None,
        fallback_accuracy: float | None = None, names: tuple[str, str] = ("primary", "fallback"),
        score_name: str = "score", chosen_threshold: float | None = None,
    ) -> None:
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.accepted_accuracy = np.asarray(accepted_accuracy, dtype=np.float64)
        self.coverage = np.asarray(coverage, dtype=np.float64)
        self.system_accuracy = None if system_accuracy is None else np.asarray(system_accuracy, dtype=np.float64)
        self.fallback_accuracy = fallback_accuracy
        self.names = names
        self.score_name = score_name
        self.chosen_threshold = chosen_threshold

    @classmethod
    def from_evaluation(cls, ev: Any, *, ax: Any = None, choice: Any = None) -> AccuracyThresholdDisplay:
        """From a two-stage :class:`~confroute.Evaluation`; ``choice`` marks a chosen threshold."""
        t, r = ev.table, _rows(ev, finite_threshold=True)
        names = (ev.stage_names[0], ev.stage_names[-1])
        disp = cls(
            t["threshold"][r], t["accepted_accuracy"][r], t["coverage"][r],
            system_accuracy=t["system_accuracy"][r] if ev.has_fallback else None,
            fallback_accuracy=ev.stage_accuracy[names[1]] if ev.has_fallback else None,
            names=names, score_name=ev.score[0], chosen_threshold=_threshold(choice),
        )
        return disp.plot(ax=ax)

    def plot(self, ax: Any = None) -> AccuracyThresholdDisplay:
        ax = self._axes(ax)
        (self.line_,) = ax.plot(self.threshold, self.accepted_accuracy, label=f"{self.names[0]} on accepted")
        self.system_line_ = self.fallback_line_ = self.chosen_line_ = None
        if self.system_accuracy is not None:
            (self.system_line_,) = ax.plot(self.threshold, self.system_accuracy, label="system (with fallback)")
        if self.fallback_accuracy is not None:
            self.fallback_line_ = ax.axhline(self.fallback_accuracy, color="C1", linestyle="--",
                                             linewidth=0.8, label=f"{self.names[1]} alone")
        (self.coverage_line_,) = ax.plot(self.threshold, self.coverage, color="0.55", linewidth=1, label="coverage")
        if self.chosen_threshold is not None:
            self.chosen_line_ = ax.axvline(self.chosen_threshold, color="0.3", linestyle=":", linewidth=1,
                                           label=f"chosen threshold {self.chosen_threshold:.3g}")
        ax.set_xlabel(f"threshold on {self.score_name}")
        ax.set_ylabel("accuracy / coverage")
        ax.set_title("Accuracy vs threshold")
        ax.legend(fontsize="small", loc="lower left")
        return self


class CostThresholdDisplay(_Display):
    """Mean cost per input against the threshold, with the last-stage-alone baseline.

    Attributes (after :meth:`plot`): ``ax_``, ``figure_``, ``line_``, ``baseline_line_``,
    ``chosen_line_`` (``None`` without a chosen threshold).
    """

    def __init__(
        self, threshold: Any, cost_per_input: Any, baseline: float, *, last_name: str = "fallback",
        score_name: str = "score", chosen_threshold: float | None = None,
    ) -> None:
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.cost_per_input = np.asarray(cost_per_input, dtype=np.float64)
        self.baseline = float(baseline)
        self.last_name = last_name
        self.score_name = score_name
        self.chosen_threshold = chosen_threshold

    @classmethod
    def from_evaluation(cls, ev: Any, *, ax: Any = None, choice: Any = None) -> CostThresholdDisplay:
        """From a two-stage :class:`~confroute.Evaluation` with prices."""
        _need_cost(ev)
        t, r = ev.table, _rows(ev, finite_threshold=True)
        disp = cls(t["threshold"][r], t["cost_per_input"][r], float(ev.cost_model.baseline(1)),
                   last_name=ev.stage_names[-1], score_name=ev.score[0], chosen_threshold=_threshold(choice))
        return disp.plot(ax=ax)

    def plot(self, ax: Any = None) -> CostThresholdDisplay:
        ax = self._axes(ax)
        (self.line_,) = ax.plot(self.threshold, self.cost_per_input, label="routed system")
        self.baseline_line_ = ax.axhline(self.baseline, color="C1", linestyle="--", linewidth=0.8,
                                         label=f"{self.last_name} alone")
        self.chosen_line_ = None
        if self.chosen_threshold is not None:
            self.chosen_line_ = ax.axvline(self.chosen_threshold, color="0.3", linestyle=":", linewidth=1,
                                           label=f"chosen threshold {self.chosen_threshold:.3g}")
        ax.set_xlabel(f"threshold on {self.score_name}")
        ax.set_ylabel("cost per input")
        ax.set_ylim(bottom=0)
        ax.set_title("Cost vs threshold")
        ax.legend(fontsize="small", loc="lower right")
        return self


class CostAccuracyDisplay(_Display):
    """System accuracy against mean cost per input, one point per threshold, the Pareto front marked.

    Attributes (after :meth:`plot`): ``ax_``, ``figure_``, ``line_`` (every threshold),
    ``front_line_`` (``None`` without a front), ``single_markers_`` (each model alone, by name),
    ``chosen_marker_`` (``None`` without a chosen point).
    """

    def __init__(
        self, cost_per_input: Any, system_accuracy: Any, *, front: Any = None,
        singles: dict[str, tuple[float, float]] | None = None,
        chosen: tuple[float, float, float] | None = None,
    ) -> None:
        self.cost_per_input = np.asarray(cost_per_input, dtype=np.float64)
        self.system_accuracy = np.asarray(system_accuracy, dtype=np.float64)
        self.front = None if front is None else np.asarray(front, dtype=np.int64)
        self.singles = dict(singles or {})
        self.chosen = chosen

    @classmethod
    def from_evaluation(
        cls, ev: Any, *, ax: Any = None, choice: Any = None, pareto: bool = True
    ) -> CostAccuracyDisplay:
        """From an :class:`~confroute.Evaluation` with prices and the last stage's answers.

        Each model alone sits at its own price: the first stage alone is the row that accepts
        everything (two stages); the last stage alone costs only its own price.
        """
        _need_cost(ev)
        if not ev.has_fallback:
            raise ValueError("accuracy vs cost needs the fallback's answers")
        t = ev.table
        first, last = ev.stage_names[0], ev.stage_names[-1]
        singles = {first: (float(t["cost_per_input"][ev.n_rows - 1]), ev.stage_accuracy[first]),
                   last: (float(ev.stage_costs[-1]), ev.stage_accuracy[last])}
        chosen = None
        threshold = _threshold(choice)
        if threshold is not None:  # the exact point at the choice, on the table or between rows
            point = ev.at(choice)
            chosen = (float(point.cost_per_input), float(point.system_accuracy), threshold)
        r = _rows(ev)
        front = ev.pareto() if pareto else None
        disp = cls(t["cost_per_input"], t["system_accuracy"], front=front, singles=singles, chosen=chosen)
        disp._shown = r
        return disp.plot(ax=ax)

    _shown: np.ndarray | None = None

    def plot(self, ax: Any = None) -> CostAccuracyDisplay:
        ax = self._axes(ax)
        r = self._shown if self._shown is not None else np.arange(self.cost_per_input.size)
        (self.line_,) = ax.plot(self.cost_per_input[r], self.system_accuracy[r], color="0.7", linewidth=1,
                                label="all thresholds")
        self.front_line_ = None
        if self.front is not None:
            (self.front_line_,) = ax.plot(self.cost_per_input[self.front], self.system_accuracy[self.front], "o-",
                                          color="C2", markersize=2.5, linewidth=1.2, label="Pareto front")
        # Colours match the other figures: the first stage is C0, the last C1.
        self.single_markers_ = {}
        for k, (name, (x, acc)) in enumerate(self.singles.items()):
            (self.single_markers_[name],) = ax.plot(x, acc, "s", color=f"C{k}", markersize=6, label=f"{name} alone")
        self.chosen_marker_ = None
        if self.chosen is not None:
            x, acc, t = self.chosen
            (self.chosen_marker_,) = ax.plot(x, acc, "*", color="k", markersize=10, label=f"chosen threshold {t:.3g}")
        ax.set_xlabel("cost per input")
        ax.set_ylabel("system accuracy")
        ax.set_title("Accuracy vs cost")
        ax.legend(fontsize="small", loc="lower right")
        return self


class RiskCoverageDisplay(_Display):
    """Risk-coverage (or accuracy-coverage) curve of a confidence score.

    Call :meth:`plot` (or a ``from_*`` constructor) again with the same ``ax`` to compare scores
    or calibrators. Attributes (after :meth:`plot`): ``ax_``, ``figure_``, ``line_``.

    Parameters
    ----------
    coverage, accuracy : array
        Share accepted and accuracy on the accepted inputs, per threshold.
    aurc : float
    label : str
    kind : {"risk", "accuracy"}
        Selective risk (lower is better) or selective accuracy on the y axis.
    """

    def __init__(self, coverage: Any, accuracy: Any, aurc: float, *, label: str = "score", kind: str = "risk") -> None:
        if kind not in ("risk", "accuracy"):
            raise ValueError(f"kind must be 'risk' or 'accuracy', got {kind!r}")
        self.coverage = np.asarray(coverage, dtype=np.float64)
        self.accuracy = np.asarray(accuracy, dtype=np.float64)
        self.aurc = float(aurc)
        self.label = label
        self.kind = kind

    @classmethod
    def from_evaluation(
        cls, ev: Any, *, ax: Any = None, kind: str = "risk", label: str | None = None
    ) -> RiskCoverageDisplay:
        """The first stage's score of an :class:`~confroute.Evaluation` (two stages)."""
        t, r = ev.table, _rows(ev)
        r = r[t["n_accepted"][r] > 0]
        disp = cls(t["coverage"][r], t["accepted_accuracy"][r], ev.aurc, label=label or ev.stage_names[0], kind=kind)
        return disp.plot(ax=ax)

    @classmethod
    def from_predictions(
        cls, scores: Any, correct: Any, *, ax: Any = None, kind: str = "risk", label: str = "score"
    ) -> RiskCoverageDisplay:
        """From a score and whether each answer is right (:func:`~confroute.calibration.metrics.risk_coverage_curve`)."""
        curve = metrics.risk_coverage_curve(scores, correct)
        disp = cls(curve.coverage, 1.0 - curve.risk, metrics.aurc(scores, correct), label=label, kind=kind)
        return disp.plot(ax=ax)

    def plot(self, ax: Any = None) -> RiskCoverageDisplay:
        ax = self._axes(ax)
        y = 1.0 - self.accuracy if self.kind == "risk" else self.accuracy
        (self.line_,) = ax.plot(self.coverage, y, label=f"{self.label} (AURC {self.aurc:.4f})")
        ax.set_xlabel("coverage")
        ax.set_ylabel("selective risk" if self.kind == "risk" else "accuracy on accepted")
        ax.set_xlim(0, 1)
        ax.set_title("Risk vs coverage" if self.kind == "risk" else "Accuracy vs coverage")
        ax.legend(fontsize="small")
        return self


class ReliabilityDisplay(_Display):
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal.

    Attributes (after :meth:`plot`): ``ax_``, ``figure_``, ``lines_`` (one per table),
    ``line_`` (the last of them), ``diagonal_line_``.

    Parameters
    ----------
    tables : list of (name, ReliabilityTable)
    """

    def __init__(self, tables: list[tuple[str, metrics.ReliabilityTable]]) -> None:
        self.tables = list(tables)

    @classmethod
    def from_evaluation(cls, ev: Any, *, ax: Any = None, label: str | None = None) -> ReliabilityDisplay:
        """The first stage of an :class:`~confroute.Evaluation`, before and after calibration
        when it was calibrated."""
        if ev.reliability is None:
            raise ValueError("this result has no probabilities (it was evaluated from scores)")
        if ev.reliability_before_calibration is not None:
            tables = [("before calibration", ev.reliability_before_calibration), ("after calibration", ev.reliability)]
        else:
            tables = [(label or ev.stage_names[0], ev.reliability)]
        return cls(tables).plot(ax=ax)

    @classmethod
    def from_predictions(
        cls, probs: Any, label_index: Any, *, ax: Any = None, n_bins: int = 15, strategy: str = "uniform",
        label: str = "model",
    ) -> ReliabilityDisplay:
        """From a probability matrix and the true labels as its column indices."""
        return cls([(label, metrics.reliability_table(probs, label_index, n_bins, strategy))]).plot(ax=ax)

    @classmethod
    def from_table(cls, table: metrics.ReliabilityTable, *, ax: Any = None, label: str | None = None) -> ReliabilityDisplay:
        """From a :class:`~confroute.calibration.metrics.ReliabilityTable`."""
        return cls([(label or table.strategy, table)]).plot(ax=ax)

    def plot(self, ax: Any = None) -> ReliabilityDisplay:
        ax = self._axes(ax, figsize=(4.2, 4.0))
        (self.diagonal_line_,) = ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1,
                                         label="perfect calibration")
        self.lines_ = []
        for i, (name, tab) in enumerate(self.tables):
            full = tab.count > 0
            (line,) = ax.plot(tab.confidence[full], tab.accuracy[full], "o-", color=f"C{i}", markersize=4,
                              label=f"{name} (ECE {tab.ece:.3f})")
            self.lines_.append(line)
        self.line_ = self.lines_[-1] if self.lines_ else None
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("mean confidence in bin")
        ax.set_ylabel("accuracy in bin")
        ax.set_title("Reliability diagram")
        ax.legend(fontsize="small", loc="upper left")
        return self


# --------------------------------------------------------------------------- one-call functions
def plot_accuracy_vs_threshold(result: Any, ax: Any = None, path: str | Path | None = None, choice: Any = None) -> Any:
    """:class:`AccuracyThresholdDisplay` of ``result``; returns the Axes."""
    return finish(AccuracyThresholdDisplay.from_evaluation(result, ax=ax, choice=choice).ax_, path)


def plot_cost_vs_threshold(result: Any, ax: Any = None, path: str | Path | None = None, choice: Any = None) -> Any:
    """:class:`CostThresholdDisplay` of ``result``; returns the Axes."""
    return finish(CostThresholdDisplay.from_evaluation(result, ax=ax, choice=choice).ax_, path)


def plot_accuracy_vs_cost(
    result: Any, ax: Any = None, path: str | Path | None = None, choice: Any = None, pareto: bool = True
) -> Any:
    """:class:`CostAccuracyDisplay` of ``result``; returns the Axes."""
    return finish(CostAccuracyDisplay.from_evaluation(result, ax=ax, choice=choice, pareto=pareto).ax_, path)


def plot_risk_coverage(
    result: Any = None, ax: Any = None, path: str | Path | None = None, *,
    scores: Any = None, correct: Any = None, kind: str = "risk", label: str | None = None,
) -> Any:
    """:class:`RiskCoverageDisplay` of an evaluation, or of ``scores`` and ``correct``; returns the Axes."""
    if result is not None:
        disp = RiskCoverageDisplay.from_evaluation(result, ax=ax, kind=kind, label=label)
    elif scores is not None and correct is not None:
        disp = RiskCoverageDisplay.from_predictions(scores, correct, ax=ax, kind=kind, label=label or "score")
    else:
        raise ValueError("give an Evaluation, or scores= and correct=")
    return finish(disp.ax_, path)


@renamed_keyword("labels", "label_index")
def plot_reliability(
    data: Any, label_index: Any = None, ax: Any = None, path: str | Path | None = None, *,
    n_bins: int = 15, strategy: str = "uniform", label: str | None = None,
) -> Any:
    """:class:`ReliabilityDisplay` of a ReliabilityTable, a probability matrix (with
    ``label_index``, the true column indices; ``labels=`` is its deprecated name) or an
    evaluation; returns the Axes."""
    if isinstance(data, metrics.ReliabilityTable):
        disp = ReliabilityDisplay.from_table(data, ax=ax, label=label)
    elif hasattr(data, "reliability"):
        disp = ReliabilityDisplay.from_evaluation(data, ax=ax, label=label)
    else:
        if label_index is None:
            raise ValueError("give label_index (the true column indices) with a probability matrix")
        disp = ReliabilityDisplay.from_predictions(data, label_index, ax=ax, n_bins=n_bins, strategy=strategy,
                                                   label=label or "model")
    return finish(disp.ax_, path)


#: Widest figure, in inches, that fits a notebook cell: Jupyter's inline backend saves at
#: matplotlib's 100 dpi with 0.1 in of padding each side, so 9.4 in is 960 px, the width of a
#: cell on a laptop screen.
NOTEBOOK_WIDTH = 9.4


def plot_summary(result: Any, path: str | Path | None = None, choice: Any = None) -> Any:
    """The study's three figures side by side, as wide as a notebook cell
    (:data:`NOTEBOOK_WIDTH`); returns the Figure."""
    plt = _pyplot()
    panels = 3 if result.has_cost and result.has_fallback else 1
    size = (NOTEBOOK_WIDTH, 3.4) if panels == 3 else (5.0, 3.6)
    fig, axes = plt.subplots(1, panels, figsize=size, layout="constrained", squeeze=False)
    AccuracyThresholdDisplay.from_evaluation(result, ax=axes[0, 0], choice=choice)
    if panels == 3:
        CostThresholdDisplay.from_evaluation(result, ax=axes[0, 1], choice=choice)
        CostAccuracyDisplay.from_evaluation(result, ax=axes[0, 2], choice=choice)
    return finish(fig, path)


#: What :meth:`Evaluation.plot <confroute.Evaluation.plot>` draws for each kind.
_KINDS: dict[str, Callable[..., Any]] = {
    "accuracy_vs_threshold": plot_accuracy_vs_threshold,
    "cost_vs_threshold": plot_cost_vs_threshold,
    "accuracy_vs_cost": plot_accuracy_vs_cost,
    "risk_coverage": lambda result, **kw: plot_risk_coverage(result, kind="risk", **kw),
    "accuracy_coverage": lambda result, **kw: plot_risk_coverage(result, kind="accuracy", **kw),
    "reliability": plot_reliability,
}


def plot_result(result: Any, kind: str = "summary", ax: Any = None, path: str | Path | None = None, **kwargs: Any) -> Any:
    """The figure :meth:`Evaluation.plot <confroute.Evaluation.plot>` names by ``kind``."""
    if kind == "summary":
        if ax is not None:
            raise ValueError("the summary plot makes its own figure; pass a single kind to draw on ax")
        return plot_summary(result, path=path, **kwargs)
    if kind not in _KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; choose one of {['summary', *_KINDS]}")
    return _KINDS[kind](result, ax=ax, path=path, **kwargs)
