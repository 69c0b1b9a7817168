"""``confroute evaluate``, part 4: the report (printed table, CSV, results.json, plots)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core._json import json_float
from ._inputs import SPREAD_LIMIT, Measured, spread_of

__all__ = [
    "Chosen",
    "pooled_point",
    "crossfit_answer",
    "cost_verdict",
    "timing_doc",
    "UNRELIABLE",
    "table_rows",
    "format_header",
    "format_table",
    "write_csv",
    "write_outputs",
    "plots",
]


@dataclass(frozen=True)
class Chosen:
    """One objective flag's answer: its wording, where it was chosen, the choice, the operating
    point on DATA, and the cross-fit behind it (``None`` unless cross-fitted)."""

    wording: str
    where: str
    on: str
    choice: Any
    point: Any
    cross_fit: Any = None


def pooled_point(cf: Any, cost_model: Any) -> Any:
    """The pooled held-out figures of a cross-fit as an operating point (for results.json)."""
    from ...evaluation.evaluate import OperatingPoint

    m = int(cf.accept.sum())
    return OperatingPoint(
        thresholds=(float(cf.final.threshold),), answered=(m, cf.n - m), n=cf.n, coverage=cf.coverage,
        shares=(cf.coverage, 1 - cf.coverage), accepted_accuracy=cf.accepted_accuracy,
        system_accuracy=cf.system_accuracy,
        cost=None if cost_model is None else float(cost_model.cost_of_answers([m, cf.n - m])),
        cost_per_input=cf.cost_per_input, savings=cf.savings,
    )


#: What stands in for savings when the timed passes spread too wide to price anything.
UNRELIABLE = "savings not stated (timing unreliable)"


def cost_verdict(result: Any, m: Measured, measured: bool) -> str:
    """Routing against each model alone on one accuracy-cost front, or, when measured timing
    spread wider than :data:`SPREAD_LIMIT`, why no verdict is given."""
    if measured and not m.timing_reliable:
        passes = (("primary", m.p_times), ("fallback", m.f_times))
        wide = [f"{name} {min(t):.2f}-{max(t):.2f} s ({spread_of(t):.2f}x)"
                for name, t in passes if spread_of(t) > SPREAD_LIMIT]
        return (f"Timing is unreliable: the timed passes of {', '.join(wide)} spread wider than "
                f"{SPREAD_LIMIT:.2f}x (slowest / fastest), so no cost verdict is given (no Pareto front, no "
                "savings). The cost columns above use the medians; rerun on an idle machine for a verdict.")
    return str(result.compare_to_alternatives(cost_unit="cost per input").summary)


def timing_doc(m: Measured, measured: bool) -> dict[str, Any]:
    """The ``timing`` entry of results.json: every pass, the medians, the spreads, the rule."""
    n = len(m.texts)
    med = [float(np.median(m.p_times)), float(np.median(m.f_times))]
    doc: dict[str, Any] = {
        "seconds_primary": m.p_times,
        "seconds_fallback": m.f_times,
        "median_seconds": med,
        "inputs_per_second": [n / med[0], n / med[1]],
    }
    if not measured:
        doc["note"] = ("seconds inside the model calls on DATA (tokenisation included); one pass, "
                       "warm-up included")
        return doc
    doc.update(
        warmup_seconds=[m.p_warmup, m.f_warmup],
        settling_seconds=[m.p_settling, m.f_settling],
        spread=[json_float(x) for x in m.spreads],
        spread_limit=SPREAD_LIMIT,
        reliable=m.timing_reliable,
        note=("seconds inside the model calls on DATA (tokenisation included). One untimed warm-up pass per "
              "model over all of DATA first (warmup_seconds; it compiles DeepSparse's length buckets), then "
              f"{len(m.p_times)} timed passes (--repeats); cost from the median. spread = slowest / fastest "
              f"timed pass; while it is above {SPREAD_LIMIT}, up to 3 more rounds are timed and the last "
              f"--repeats kept (the earlier ones: settling_seconds); still above it, the timing is unreliable "
              "and no cost verdict is given."),
    )
    return doc


def crossfit_answer(cf: Any, reliable: bool = True) -> str:
    """The usable answer of a cross-fit, or what would be needed for one (no savings when the
    timing is not ``reliable``)."""
    if not cf.usable:
        return f"  no usable threshold: {cf.advice}"
    t = "" if cf.final_temperature is None else f" (T = {cf.final_temperature:.3f})"
    lines = [(f"  answer: route at threshold {cf.final.threshold:.4g} on PRIMARY's calibrated confidence{t}, "
              "both refitted on all of DATA.")]
    held = f"  on the held-out folds PRIMARY answers {cf.coverage:.1%} of inputs"
    if cf.system_accuracy is not None and cf.fallback_accuracy:
        held += (f", system accuracy {cf.system_accuracy:.4f} = {cf.system_accuracy / cf.fallback_accuracy:.2%} "
                 f"of FALLBACK's {cf.fallback_accuracy:.4f}")
    else:
        held += f", accuracy on accepted {cf.accepted_accuracy:.4f}"
    if cf.savings is not None:
        held += f", savings {cf.savings:.1%}" if reliable else f", {UNRELIABLE}"
    lines.append(held + f"; target met on held-out folds ({cf.folds_met} of {len(cf.folds)} folds on their own).")
    return "\n".join(lines)


def table_rows(result: Any, thresholds: list[float] | None) -> list[dict[str, Any]]:
    if thresholds is None:
        return [dict(zip(result.table, values)) for values in zip(*result.table.values())]
    return [result.at(t).to_dict() | {"threshold": t} for t in thresholds]


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        width = spec.lstrip("<>^").split(".")[0]
        return "-".rjust(int(width) if width.isdigit() else 1)
    return format(v, spec)


def format_header(result: Any) -> str:
    s = result.summary()
    acc = "   ".join(f"{k} alone {v:.4f}" for k, v in s["stage_accuracy"].items())
    line = f"{acc}   AURC {result.aurc:.4f}"
    if result.ece is not None:
        line += f"   ECE {result.ece:.4f}"
        if result.ece_before_calibration is not None:
            line += f" (before calibration {result.ece_before_calibration:.4f})"
    return line


def format_table(rows: list[dict[str, Any]], result: Any) -> str:
    head = f"{'threshold':>9} {'accepted':>8} {'coverage':>8} {'acc(accepted)':>13} {'system acc':>10}"
    if result.has_cost:
        head += f" {'cost/input':>11} {'savings':>8}"
    lines = [head]
    for r in rows:
        thr = r["threshold"]
        line = (f"{_fmt(thr, '>9.4g') if thr is not None and math.isfinite(thr) else '      inf'} "
                f"{int(r['n_accepted']):>8} {_fmt(float(r['coverage']), '>8.1%')} "
                f"{_fmt(json_float(r['accepted_accuracy']), '>13.4f')} {_fmt(json_float(r['system_accuracy']), '>10.4f')}")
        if result.has_cost:
            line += f" {_fmt(json_float(r['cost_per_input']), '>11.4g')}" \
                    f" {_fmt(json_float(r['savings']), '>8.1%')}"
        lines.append(line)
    return "\n".join(lines)


_CSV_COLUMNS = ("threshold", "n_accepted", "coverage", "routed_fraction", "accepted_accuracy",
                "system_accuracy", "cost", "savings")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """The rows as CSV: the table's columns, then the cost per input."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*_CSV_COLUMNS, "cost_per_input"])
        for r in rows:
            vals: list[Any] = [json_float(r[c]) if c != "n_accepted" else int(r[c]) for c in _CSV_COLUMNS]
            if r["threshold"] is not None and math.isinf(float(r["threshold"])):
                vals[0] = "inf"  # accept nothing; pandas and float() read "inf" back as infinity
            per_input = json_float(r["cost_per_input"])
            w.writerow(["" if v is None else v for v in vals] + ["" if per_input is None else per_input])


def write_outputs(out: Path, args: argparse.Namespace, result: Any, rows: list[dict[str, Any]],
                  chosen: list[Chosen], cost_model: Any, m: Measured,
                  calibration_doc: dict[str, Any] | None = None, measured: bool = False) -> list[Path]:
    """table.csv, sweep.csv, results.json (and predictions.npz with ``--save-predictions``)."""
    files = [out / "table.csv", out / "sweep.csv", out / "results.json"]
    write_csv(files[0], rows)
    full = [dict(zip(result.table, values)) for values in zip(*result.table.values())]
    write_csv(files[1], full)
    doc = {
        "command": "confroute evaluate",
        "primary": args.primary,
        "fallback": args.fallback,
        "data": str(args.data),
        "calibration": args.calibration,
        "labels": m.label_note,
        "summary": result.summary(),
        "temperature": (calibration_doc or {}).get("temperature"),
        "calibration_mode": calibration_doc,
        "timing": timing_doc(m, measured),
        "cost_verdict": cost_verdict(result, m, measured) if result.has_cost else None,
        "cost_model": None if cost_model is None else {"spec": args.cost, **cost_model.to_dict()},
        "table": [{c: (json_float(r[c]) if c != "n_accepted" else int(r[c])) for c in _CSV_COLUMNS} for r in rows],
        "choices": [
            {"wording": c.wording, "chosen_on": c.where, **c.choice.to_dict(), "on_data": c.point.to_dict(),
             **({} if c.cross_fit is None else {"cross_fit": c.cross_fit.to_dict()})}
            for c in chosen
        ],
    }
    files[2].write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if args.save_predictions:
        path = out / "predictions.npz"
        np.savez_compressed(
            path, labels=m.y_index, primary_probs=m.pp.probs, fallback_probs=m.fp.probs,
            primary_logits=m.pp.logits if m.pp.logits is not None else np.empty(0),
            fallback_logits=m.fp.logits if m.fp.logits is not None else np.empty(0),
            primary_scores=result.scores,
        )
        files.append(path)
    return files


def plots(out: Path, result: Any, choice: Any) -> list[Path]:
    """The PNG figures (none, with a warning, without matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        warnings.warn("matplotlib is not installed: no plots (pip install 'confroute[plot]')", stacklevel=2)
        return []
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")  # files only; never open a window from a command line run
    import matplotlib.pyplot as plt

    written = []
    kinds = ["summary", "accuracy_coverage", "reliability"] if result.has_cost else ["accuracy_coverage", "reliability"]
    if not result.has_cost:
        kinds.insert(0, "accuracy_vs_threshold")
    for kind in kinds:
        path = out / f"{kind}.png"
        kwargs = {"choice": choice} if kind in ("summary", "accuracy_vs_threshold") else {}
        obj = result.plot(kind, path=path, **kwargs)
        plt.close(obj if hasattr(obj, "savefig") else obj.get_figure())
        written.append(path)
    return written
