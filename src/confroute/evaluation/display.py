"""How an evaluation reads as text: the ``repr`` of :class:`~confroute.Evaluation`.

The function reads the evaluation's public attributes only (duck typing), so this module imports
nothing from :mod:`confroute.evaluation.result`; the HTML rendering is
:func:`confroute.core._html.evaluation_html`, the figures are the Display objects of
:mod:`confroute.evaluation.plotting`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["evaluation_text"]


def _header(ev: Any) -> list[str]:
    kind = f"{ev.n_rows} thresholds" if ev.exhaustive else f"{ev.n_rows} threshold tuples"
    lines = [f"Evaluation(n={ev.n}, stages={list(ev.stage_names)}, score={list(ev.score)}, {kind})"]
    acc = "   ".join(f"{k} alone {v:.4f}" for k, v in ev.stage_accuracy.items())
    lines.append(f"  accuracy: {acc}")
    extra = f"  AURC {ev.aurc:.4f}   E-AURC {ev.eaurc:.4f}"
    if ev.ece is not None:
        extra += f"   ECE {ev.ece:.4f}"
        if ev.ece_before_calibration is not None:
            extra += f" (before calibration {ev.ece_before_calibration:.4f})"
    lines.append(extra)
    return lines


def _row_text(ev: Any, point: Any, thresholds: str) -> str:
    row = f"  {thresholds:>18} {point.coverage:>9.1%} {point.accepted_accuracy:>14.4f}"
    if ev.has_fallback:
        row += f" {point.system_accuracy:>11.4f}"
    if ev.has_cost:
        row += f" {point.cost_per_input:>12.5g} {point.savings:>8.1%}"
    return row


def evaluation_text(ev: Any) -> str:
    """A few spread rows of the table (or its Pareto front for cascades) under the headline figures."""
    lines = _header(ev)
    if ev.n_rows == 0:
        lines.append(f"  (no table: {ev.n_candidates} threshold tuples on the grid)")
        return "\n".join(lines)
    thr_head = "threshold" if ev.n_stages == 2 else "thresholds"
    header = f"  {thr_head:>18} {'coverage':>9} {'acc(accepted)':>14}"
    if ev.has_fallback:
        header += f" {'system acc':>11}"
    if ev.has_cost:
        header += f" {'cost/input':>12} {'savings':>8}"
    if not ev.exhaustive and ev.has_cost and ev.has_fallback:
        front = ev.pareto()
        rows = front[np.unique(np.linspace(0, max(front.size - 1, 0), 10).round().astype(int))]
        lines.append("  Pareto front (cost per input vs system accuracy):")
    else:
        rows = ev.spread_rows(11)
    lines.append(header)
    for r in rows:
        thr = ", ".join(f"{v:.4g}" for v in ev.table["thresholds"][int(r)])
        lines.append(_row_text(ev, ev.row(int(r)), thr))
    if ev.per_class is not None:
        lines.append(_row_text(ev, ev.per_class, "per-class"))
    return "\n".join(lines)
