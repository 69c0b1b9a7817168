"""Figures for evaluation results (matplotlib, the ``plot`` extra; imported on first use).

Every function draws on the given Axes (or a new figure), returns the Axes (or the Figure for
multi-panel plots), and saves a PNG when given ``path``. For scripts and tests without a display,
select matplotlib's Agg backend first (``matplotlib.use("Agg")``).

The study's three figures are :func:`plot_accuracy_vs_threshold`, :func:`plot_cost_vs_threshold`
and :func:`plot_accuracy_vs_cost`; :func:`plot_summary` puts them side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..calibration import metrics

if TYPE_CHECKING:  # pragma: no cover
    from .evaluate import EvaluationResult


class ThresholdChoice(Protocol):
    """What the plots read from a threshold choice (any object with a ``threshold``)."""

    threshold: float

__all__ = [
    "plot_accuracy_vs_threshold",
    "plot_cost_vs_threshold",
    "plot_accuracy_vs_cost",
    "plot_risk_coverage",
    "plot_reliability",
    "plot_summary",
    "plot_result",
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


def _axes(ax: Any, figsize: tuple[float, float] = (5.0, 3.6)) -> Any:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def save(obj: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save the figure of ``obj`` (a Figure or Axes) as PNG; returns the path."""
    fig = obj.get_figure() if hasattr(obj, "get_figure") and not hasattr(obj, "savefig") else obj
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _done(obj: Any, path: str | Path | None) -> Any:
    if path is not None:
        save(obj, path)
    return obj


def _rows(result: EvaluationResult, finite_threshold: bool = False) -> np.ndarray:
    d = result.n_thresholds
    rows = np.arange(d) if d <= MAX_POINTS else result._spread_rows(MAX_POINTS)
    if finite_threshold:
        rows = rows[np.isfinite(result.table["threshold"][rows])]
    return rows


def _mark(ax: Any, choice: ThresholdChoice | None, x: float | None = None) -> None:
    if choice is None or not np.isfinite(choice.threshold):
        return
    ax.axvline(choice.threshold if x is None else x, color="0.3", linestyle=":", linewidth=1,
               label=f"chosen threshold {choice.threshold:.3g}")


def plot_accuracy_vs_threshold(
    result: EvaluationResult, ax: Any = None, path: str | Path | None = None,
    choice: ThresholdChoice | None = None,
) -> Any:
    """Accuracy on accepted inputs, system accuracy and coverage against the threshold."""
    ax = _axes(ax)
    t = result.table
    r = _rows(result, finite_threshold=True)
    ax.plot(t["threshold"][r], t["accepted_accuracy"][r], label=f"{result.stage_names[0]} on accepted")
    if result.has_fallback:
        ax.plot(t["threshold"][r], t["system_accuracy"][r], label="system (with fallback)")
        ax.axhline(result.stage_accuracy[result.stage_names[1]], color="C1", linestyle="--",
                   linewidth=0.8, label=f"{result.stage_names[1]} alone")
    ax.plot(t["threshold"][r], t["coverage"][r], color="0.55", linewidth=1, label="coverage")
    _mark(ax, choice)
    ax.set_xlabel(f"threshold on {result.score}")
    ax.set_ylabel("accuracy / coverage")
    ax.set_title("Accuracy vs threshold")
    ax.legend(fontsize="small", loc="lower left")
    return _done(ax, path)


def _need_cost(result: EvaluationResult) -> None:
    if not result.has_cost:
        raise ValueError("this plot needs stage prices: evaluate(..., cost_model=...)")


def plot_cost_vs_threshold(
    result: EvaluationResult, ax: Any = None, path: str | Path | None = None,
    choice: ThresholdChoice | None = None,
) -> Any:
    """Mean cost per input against the threshold, with the fallback-alone baseline."""
    _need_cost(result)
    ax = _axes(ax)
    t = result.table
    r = _rows(result, finite_threshold=True)
    ax.plot(t["threshold"][r], t["cost"][r] / result.n, label="routed system")
    assert result.stage_costs is not None
    ax.axhline(result.stage_costs[-1], color="C1", linestyle="--", linewidth=0.8,
               label=f"{result.stage_names[-1]} alone")
    _mark(ax, choice)
    ax.set_xlabel(f"threshold on {result.score}")
    ax.set_ylabel("cost per input")
    ax.set_ylim(bottom=0)
    ax.set_title("Cost vs threshold")
    ax.legend(fontsize="small", loc="lower right")
    return _done(ax, path)


def plot_accuracy_vs_cost(
    result: EvaluationResult, ax: Any = None, path: str | Path | None = None,
    choice: ThresholdChoice | None = None, pareto: bool = True,
) -> Any:
    """System accuracy against mean cost per input, one point per threshold, Pareto front marked."""
    _need_cost(result)
    if not result.has_fallback:
        raise ValueError("accuracy vs cost needs the fallback's answers")
    ax = _axes(ax)
    t = result.table
    r = _rows(result)
    cost = t["cost"] / result.n
    ax.plot(cost[r], t["system_accuracy"][r], color="0.7", linewidth=1, label="all thresholds")
    if pareto:
        front = result.pareto()
        ax.plot(cost[front], t["system_accuracy"][front], "o-", color="C2", markersize=2.5,
                linewidth=1.2, label="Pareto front")
    # Colours match the other figures: the primary is C0, the fallback C1. Each model alone sits at
    # its own price: the last table row is the primary answering everything; the fallback alone
    # costs only its own price (row 0, "accept nothing", also pays the primary that runs first).
    prices = result.stage_costs
    assert prices is not None
    ends = [(result.stage_names[0], float(cost[result.n_thresholds - 1]), result.stage_accuracy[result.stage_names[0]], "C0"),
            (result.stage_names[-1], float(prices[-1]), result.stage_accuracy[result.stage_names[-1]], "C1")]
    for name, x, acc, colour in ends:
        ax.plot(x, acc, "s", color=colour, markersize=6, label=f"{name} alone")
    if choice is not None and np.isfinite(choice.threshold):
        i = result._row(choice.threshold)
        ax.plot(cost[i], t["system_accuracy"][i], "*", color="k", markersize=10,
                label=f"chosen threshold {choice.threshold:.3g}")
    ax.set_xlabel("cost per input")
    ax.set_ylabel("system accuracy")
    ax.set_title("Accuracy vs cost")
    ax.legend(fontsize="small", loc="lower right")
    return _done(ax, path)


def plot_risk_coverage(
    result: EvaluationResult | None = None, ax: Any = None, path: str | Path | None = None, *,
    scores: Any = None, correct: Any = None, kind: str = "risk", label: str | None = None,
) -> Any:
    """Risk-coverage (or accuracy-coverage) curve of the primary's score.

    Give an :class:`~confroute.EvaluationResult`, or ``scores`` and ``correct`` arrays. Call it
    again with the same ``ax`` to compare scores or calibrators.

    Parameters
    ----------
    kind : {"risk", "accuracy"}
        Selective risk (lower is better) or selective accuracy on the y axis.
    """
    if kind not in ("risk", "accuracy"):
        raise ValueError(f"kind must be 'risk' or 'accuracy', got {kind!r}")
    ax = _axes(ax)
    if result is not None:
        t = result.table
        r = _rows(result)
        r = r[t["n_accepted"][r] > 0]
        cov, acc = t["coverage"][r], t["accepted_accuracy"][r]
        auc = result.aurc
        label = label or result.stage_names[0]
    elif scores is not None and correct is not None:
        curve = metrics.risk_coverage_curve(scores, correct)
        cov, acc = curve.coverage, 1.0 - curve.risk
        auc = metrics.aurc(scores, correct)
        label = label or "score"
    else:
        raise ValueError("give an EvaluationResult, or scores= and correct=")
    y = 1.0 - acc if kind == "risk" else acc
    ax.plot(cov, y, label=f"{label} (AURC {auc:.4f})")
    ax.set_xlabel("coverage")
    ax.set_ylabel("selective risk" if kind == "risk" else "accuracy on accepted")
    ax.set_xlim(0, 1)
    ax.set_title("Risk vs coverage" if kind == "risk" else "Accuracy vs coverage")
    ax.legend(fontsize="small")
    return _done(ax, path)


def plot_reliability(
    data: Any, labels: Any = None, ax: Any = None, path: str | Path | None = None, *,
    n_bins: int = 15, strategy: str = "uniform", label: str | None = None,
) -> Any:
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal.

    ``data`` is a :class:`~confroute.calibration.metrics.ReliabilityTable`, a probability matrix (then give
    ``labels``), or an :class:`~confroute.EvaluationResult` (draws the primary before and after
    calibration when it was calibrated).
    """
    from .evaluate import EvaluationResult

    ax = _axes(ax, figsize=(4.2, 4.0))
    tables: list[tuple[str, metrics.ReliabilityTable]] = []
    if isinstance(data, EvaluationResult):
        if data.reliability is None:
            raise ValueError("this result has no probabilities (it was evaluated from scores)")
        if data.reliability_before_calibration is not None:
            tables.append(("before calibration", data.reliability_before_calibration))
            tables.append(("after calibration", data.reliability))
        else:
            tables.append((label or data.stage_names[0], data.reliability))
    elif isinstance(data, metrics.ReliabilityTable):
        tables.append((label or data.strategy, data))
    else:
        if labels is None:
            raise ValueError("give labels with a probability matrix")
        tables.append((label or "model", metrics.reliability_table(data, labels, n_bins, strategy)))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    for i, (name, tab) in enumerate(tables):
        full = tab.count > 0
        ax.plot(tab.confidence[full], tab.accuracy[full], "o-", color=f"C{i}", markersize=4,
                label=f"{name} (ECE {tab.ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("accuracy in bin")
    ax.set_title("Reliability diagram")
    ax.legend(fontsize="small", loc="upper left")
    return _done(ax, path)


def plot_summary(
    result: EvaluationResult, path: str | Path | None = None, choice: ThresholdChoice | None = None
) -> Any:
    """The study's three figures side by side; returns the Figure."""
    plt = _pyplot()
    panels = 3 if result.has_cost and result.has_fallback else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 3.8), layout="constrained", squeeze=False)
    plot_accuracy_vs_threshold(result, ax=axes[0, 0], choice=choice)
    if panels == 3:
        plot_cost_vs_threshold(result, ax=axes[0, 1], choice=choice)
        plot_accuracy_vs_cost(result, ax=axes[0, 2], choice=choice)
    return _done(fig, path)


_KINDS = {
    "accuracy_vs_threshold": plot_accuracy_vs_threshold,
    "cost_vs_threshold": plot_cost_vs_threshold,
    "accuracy_vs_cost": plot_accuracy_vs_cost,
}


def plot_result(result: EvaluationResult, kind: str = "summary", ax: Any = None,
                path: str | Path | None = None, **kwargs: Any) -> Any:
    """Dispatch for :meth:`EvaluationResult.plot`."""
    if kind == "summary":
        if ax is not None:
            raise ValueError("the summary plot makes its own figure; pass a single kind to draw on ax")
        return plot_summary(result, path=path, **kwargs)
    if kind in _KINDS:
        return _KINDS[kind](result, ax=ax, path=path, **kwargs)
    if kind in ("risk_coverage", "accuracy_coverage"):
        return plot_risk_coverage(result, ax=ax, path=path,
                                  kind="risk" if kind == "risk_coverage" else "accuracy", **kwargs)
    if kind == "reliability":
        return plot_reliability(result, ax=ax, path=path, **kwargs)
    options = ["summary", *_KINDS, "risk_coverage", "accuracy_coverage", "reliability"]
    raise ValueError(f"unknown plot kind {kind!r}; choose one of {options}")
