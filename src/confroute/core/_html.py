"""HTML renderings for Jupyter: the ``_repr_html_`` of every result type calls one function here.

The functions read the objects' public attributes only (duck typing), so this module imports
nothing from the layers above it, and a result type that is rewritten keeps its display by
calling the same function. Every number shown is read from the object; nothing is recomputed
except shares (count / n).

The output is a self-contained ``<div>`` with inline styles (no CSS classes, no scripts), so it
renders the same in Jupyter, VS Code, GitHub's notebook viewer and exported HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "routing_result_html",
    "evaluation_html",
    "cascade_evaluation_html",
    "threshold_choice_html",
    "cascade_choice_html",
    "per_class_choice_html",
    "routed_classifier_html",
    "router_html",
    "score_text",
]

_TABLE = "border-collapse:collapse;margin:0.3em 0;font-size:0.9em"
_CELL = "padding:0.15em 0.7em;border-bottom:1px solid #ddd;text-align:right"
_HEAD = "padding:0.15em 0.7em;border-bottom:2px solid #888;text-align:right"
_LEFT = ";text-align:left"


def _esc(x: Any) -> str:
    return html.escape(str(x))


def fmt(x: Any, kind: str = "num") -> str:
    """One number as text: ``"pct"`` (percent), ``"num"`` (4 significant digits), ``"int"``.

    ``None`` and NaN become an em dash; ``inf`` a threshold that accepts nothing.

    Examples
    --------
    >>> fmt(0.91234, "pct"), fmt(float("nan")), fmt(float("inf")), fmt(12, "int")
    ('91.23%', '—', '∞', '12')
    """
    if x is None:
        return "—"
    v = float(x)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if kind == "pct":
        return f"{v:.2%}"
    if kind == "int":
        return f"{int(v):,}"
    return f"{v:.4g}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 0, nowrap: int = 0) -> str:
    """An HTML table; cells are escaped; the first ``left`` columns are left-aligned, the first
    ``nowrap`` columns never wrap (names of figures: a long value wraps instead)."""
    def style(base: str, i: int) -> str:
        return base + (_LEFT if i < left else "") + (";white-space:nowrap" if i < nowrap else "")

    out = [f'<table style="{_TABLE}"><thead><tr>']
    out += [f'<th style="{style(_HEAD, i)}">{_esc(h)}</th>' for i, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        out += [f'<td style="{style(_CELL, i)}">{_esc(c)}</td>' for i, c in enumerate(row)]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def facts(items: Iterable[tuple[str, str]]) -> str:
    """Key figures as a two-column table (name, value)."""
    return table(["", ""], items, left=1, nowrap=1).replace("<thead>", '<thead style="display:none">', 1)


def block(title: str, *parts: str) -> str:
    body = "".join(parts)
    return (
        '<div style="font-family:system-ui,sans-serif;line-height:1.35">'
        f'<div style="font-weight:600;margin-bottom:0.2em">{_esc(title)}</div>{body}</div>'
    )


def _note(text: str) -> str:
    return f'<div style="color:#666;font-size:0.85em">{_esc(text)}</div>'


def score_text(score: Any) -> str:
    """The confidence score(s) of an evaluation or router as text: one name, or names joined by
    commas (an evaluation holds one score per stage but the last, as a tuple).

    Examples
    --------
    >>> score_text(("max_prob",)), score_text(("max_prob", "margin")), score_text("margin")
    ('max_prob', 'max_prob, margin', 'margin')
    """
    if isinstance(score, (list, tuple)):
        return ", ".join(score_text(s) for s in score)
    if isinstance(score, str):
        return score
    return str(getattr(score, "__name__", None) or type(score).__name__)  # as core.scores.score_name


# --------------------------------------------------------------------------- routing results
def routing_result_html(result: Any) -> str:
    """Counts per stage (and share), abstained, degraded inputs and cost of a ``RoutingResult``."""
    n = len(result)
    rows = []
    cost = getattr(result, "cost", None)
    for s, name in enumerate(result.stage_names):
        answered = int(np.sum(result.stage == s))
        reached = int(np.sum(result.reached[s])) if result.reached.size else 0
        row = [str(name), fmt(answered, "int"), fmt(answered / n if n else None, "pct"), fmt(reached, "int")]
        rows.append(row)
    abstained = int(np.sum(result.stage < 0))
    if abstained:
        rows.append(["abstained", fmt(abstained, "int"), fmt(abstained / n, "pct"), ""])
    figures = [("inputs", fmt(n, "int")), ("coverage (first stage)", fmt(result.coverage, "pct"))]
    degraded = int(np.sum(result.degraded))
    figures.append(("degraded", f"{degraded:,}" + (f" ({degraded / n:.2%})" if n and degraded else "")))
    if cost is not None:
        total = float(np.sum(cost))
        figures.append(("total cost", fmt(total)))
        figures.append(("cost per input", fmt(total / n if n else None)))
    return block(
        "RoutingResult",
        facts(figures),
        table(["stage", "answered", "share", "reached"], rows, left=1),
    )


# --------------------------------------------------------------------------- evaluation results
def _stage_accuracy(stage_accuracy: dict[str, float]) -> str:
    return table(["stage", "accuracy alone"], [[k, fmt(v, "pct")] for k, v in stage_accuracy.items()], left=1)


def evaluation_html(res: Any, max_rows: int = 11) -> str:
    """Key figures and the operating-point table of an ``Evaluation``: rows spread over coverage
    for two stages, the Pareto front for a cascade."""
    if not getattr(res, "exhaustive", True) or res.n_stages > 2:
        return cascade_evaluation_html(res, max_rows=max_rows)
    figures = [("inputs", fmt(res.n, "int")), ("score", score_text(res.score)),
               ("distinct thresholds", fmt(res.n_thresholds, "int")),
               ("AURC", fmt(res.aurc)), ("E-AURC", fmt(res.eaurc))]
    if res.ece is not None:
        ece = fmt(res.ece)
        if res.ece_before_calibration is not None:
            ece += f" (before calibration {fmt(res.ece_before_calibration)})"
        figures.append(("ECE", ece))
    header = ["threshold", "coverage", "accepted acc."]
    if res.has_fallback:
        header.append("system acc.")
    if res.has_cost:
        header += ["cost / input", "savings"]
    t = res.table
    row_thresholds = getattr(res, "row_thresholds", None)  # one per table row (was ``thresholds``)
    if row_thresholds is None:
        row_thresholds = t["threshold"]
    spread = res.spread_rows
    rows = []
    for i in spread(max_rows):
        row = [fmt(row_thresholds[i]), fmt(t["coverage"][i], "pct"), fmt(t["accepted_accuracy"][i], "pct")]
        if res.has_fallback:
            row.append(fmt(t["system_accuracy"][i], "pct"))
        if res.has_cost:
            row += [fmt(t["cost_per_input"][i]), fmt(t["savings"][i], "pct")]
        rows.append(row)
    per_class = getattr(res, "per_class", None)
    if per_class is not None:
        row = ["per-class", fmt(per_class.coverage, "pct"), fmt(per_class.accepted_accuracy, "pct")]
        if res.has_fallback:
            row.append(fmt(per_class.system_accuracy, "pct"))
        if res.has_cost:
            row += [fmt(per_class.cost_per_input), fmt(per_class.savings, "pct")]
        rows.append(row)
    shown = min(max_rows, res.n_thresholds)
    return block(
        f"Evaluation: {' → '.join(map(str, res.stage_names))}",
        facts(figures),
        _stage_accuracy(res.stage_accuracy),
        table(header, rows),
        _note(f"{shown} of {res.n_thresholds} operating points, spread over coverage; "
              "to_pandas() of this evaluation has them all"),
    )


def cascade_evaluation_html(res: Any, max_rows: int = 10) -> str:
    """Stage accuracies and the Pareto front (or the most accurate rows without prices) of a
    ``CascadeEvaluation``."""
    figures = [("inputs", fmt(res.n, "int")), ("threshold tuples", fmt(res.n_rows, "int"))]
    parts = [facts(figures), _stage_accuracy(res.stage_accuracy)]
    if res.n_rows:
        if res.has_cost:
            rows_idx = res.pareto()
            title = "Pareto front (cost vs system accuracy)"
        else:
            rows_idx = np.argsort(-res.table["system_accuracy"], kind="stable")[:max_rows]
            title = "most accurate threshold tuples"
        if rows_idx.size > max_rows:
            rows_idx = rows_idx[np.unique(np.linspace(0, rows_idx.size - 1, max_rows).round().astype(int))]
        header = [f"threshold {name}" for name in res.stage_names[:-1]]
        header += [f"share {name}" for name in res.stage_names] + ["system acc."]
        if res.has_cost:
            header += ["cost / input", "savings"]
        rows = []
        for r in rows_idx:
            p = res.row(int(r))
            row = [fmt(v) for v in p.thresholds] + [fmt(v, "pct") for v in p.shares]
            row.append(fmt(p.system_accuracy, "pct"))
            if res.has_cost:
                row += [fmt(p.cost_per_input), fmt(p.savings, "pct")]
            rows.append(row)
        parts += [_note(title), table(header, rows)]
    return block(f"Evaluation: {' → '.join(map(str, res.stage_names))}", *parts)


# --------------------------------------------------------------------------- threshold choices
def _missing(x: Any) -> bool:
    """A figure that is not there: ``None`` or ``nan`` (a :class:`~confroute.core.choice.Choice`
    writes a missing figure as ``nan``)."""
    if x is None:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def _guarantee(c: Any, bound: Any) -> str:
    """What the choice's certificate says: its bound and level, or why there is none."""
    if c.delta is None:
        return "none (empirical choice)"
    if _missing(bound):
        return "nothing certified"
    rel = "≤" if c.sense == "<=" else "≥"
    return f"{rel} {fmt(bound, c.figure_format)} with probability {1 - float(c.delta):.3g}"


def _procedure(c: Any) -> list[tuple[str, str]]:
    """The procedure, and what its guarantee assumes (a choice's ``assumption`` text, when it
    has one: core cannot import selection, so the text travels on the choice)."""
    out = [("procedure", str(c.procedure))] if c.procedure else []
    assumption = getattr(c, "assumption", "")
    return out + ([("assumes", str(assumption))] if assumption else [])


def threshold_choice_html(c: Any) -> str:
    """Target, guarantee, threshold and coverage of a two-stage choice (``ThresholdChoice``).

    Reads the attributes every :class:`~confroute.core.choice.Choice` has (its ``wording``,
    ``sense`` and ``figure_format`` say the objective; a ``nan`` figure is shown as missing).
    """
    kind = c.figure_format
    figures = [
        ("objective", c.wording),
        ("target", fmt(c.target, kind)),
        ("threshold", fmt(c.thresholds[0])),
        ("feasible", "yes" if c.feasible else "no: the target is not reachable; safe end returned"),
        ("on calibration data", fmt(c.empirical, kind)),
        ("guaranteed", _guarantee(c, c.guaranteed)),
        *_procedure(c),
        ("coverage", f"{fmt(c.coverage, 'pct')} ({c.m:,} of {c.n:,} accepted, {c.k:,} errors)"),
        ("accepted accuracy", fmt(c.accepted_accuracy, "pct")),
    ]
    for name, label, how in (("system_accuracy", "system accuracy", "pct"),
                             ("cost_per_input", "cost per input", "num"), ("savings", "savings", "pct")):
        if not _missing(getattr(c, name)):
            figures.append((label, fmt(getattr(c, name), how)))
    return block("ThresholdChoice", facts(figures))


def cascade_choice_html(c: Any) -> str:
    """Thresholds, target, guarantee and shares of a ``CascadeChoice``."""
    kind = c.figure_format
    figures = [
        ("objective", c.wording),
        ("target", fmt(c.target, kind)),
        ("thresholds", ", ".join(fmt(t) for t in c.thresholds)),
        ("feasible", "yes" if c.feasible else "no: the target is not reachable; safe end returned"),
        ("guaranteed", _guarantee(c, c.guaranteed)),
        *_procedure(c),
        ("shares answered", " / ".join(fmt(s, "pct") for s in c.shares)),
        ("system accuracy", fmt(c.system_accuracy, "pct")),
        ("cost per input", fmt(c.cost_per_input)),
        ("savings", fmt(c.savings, "pct")),
        ("search", f"{c.method}, {c.n_evaluated:,} of {c.n_candidates:,} tuples"),
    ]
    return block("CascadeChoice", facts(figures))


def per_class_choice_html(c: Any) -> str:
    """Target, guarantee and the threshold of each predicted class of a ``PerClassChoice``."""
    names = c.classes or tuple(range(len(c.threshold)))
    feasible = c.class_feasible
    rows = []
    for i, name in enumerate(names):
        ch = c.choices[i]
        rows.append([str(name), fmt(c.threshold[i]), fmt(int(c.n_predicted[i]), "int"),
                     "-" if ch is None else fmt(ch.coverage, "pct"),
                     "-" if ch is None else fmt(ch.accepted_accuracy, "pct"),
                     "-" if ch is None or _missing(ch.guaranteed) else fmt(ch.guaranteed, "pct"),
                     "yes" if feasible[i] else "no"])
    figures = [("objective", f"{c.wording}, per predicted class"),
               ("target", fmt(c.target, c.figure_format)),
               ("guarantee", "none (empirical choice)" if c.delta is None
                else f"each class at level {fmt(c.level)} (probability {1 - float(c.delta):.3g} overall)")]
    return block("PerClassChoice", facts(figures),
                 table(["class", "threshold", "predicted", "coverage", "accepted acc.", "bound", "feasible"],
                       rows, left=1))


# --------------------------------------------------------------------------- routers
def _threshold_text(t: Any) -> str:
    """A stage's threshold: one number, or one per class (a mapping or an array)."""
    if isinstance(t, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in t.items())
    if np.ndim(t) > 0:
        return "per class: " + ", ".join(fmt(v) for v in np.asarray(t).ravel())
    return fmt(t)


def router_html(router: Any) -> str:
    """The stages of a router (``ThresholdRouter``, ``Cascade``): per stage, its name, model,
    score and threshold (or "answers the rest"), calibration, price and failure policy."""
    names = list(router.names)
    prices = None if router.cost_model is None else router.cost_model.stage_costs
    rows = []
    for s, (name, stage) in enumerate(zip(names, router.stages)):
        last = s == len(names) - 1
        calibrator = router.calibrators[s]
        rows.append([
            str(name), type(stage.predictor).__name__,
            "—" if last else score_text(router.score[s]),
            "answers the rest" if last else _threshold_text(router.thresholds[s]),
            "—" if calibrator is None else type(calibrator).__name__,
            "—" if prices is None else fmt(prices[s]),
            str(stage.on_error),
        ])
    header = ["stage", "model", "score", "threshold", "calibrator", "price / input", "on error"]
    return block(f"{type(router).__name__}: {' → '.join(map(str, names))}", table(header, rows, left=2))


# --------------------------------------------------------------------------- RoutedClassifier
def routed_classifier_html(est: Any) -> str:
    """The fitted routing of a ``RoutedClassifier``: per stage, its threshold, temperature and
    price, and the threshold choice (empty before ``fit``)."""
    names = getattr(est, "stage_names_", None)
    if names is None:
        return ""
    temps = [getattr(c, "temperature_", None) for c in est.calibrators_]
    costs = est.stage_costs_
    rows = []
    for s, name in enumerate(names):
        thr = "answers the rest" if s == len(names) - 1 else fmt(est.thresholds_[s])
        rows.append([str(name), "frozen (prefit)" if est.frozen_[s] else "fitted", thr,
                     fmt(temps[s]) if temps[s] is not None else "—",
                     fmt(None if costs is None else costs[s])])
    parts = [table(["stage", "model", "threshold", "temperature", "price / input"], rows, left=2)]
    parts.append(est.choice_._repr_html_())  # the choice's own display, whatever its kind
    return block("fitted routing", *parts)
