"""Validity in five row orders (issue 27): every procedure and bound, the same draws passed as
drawn, sorted by score ascending and descending, grouped by predicted class, sorted by label.

For each setting of the order suite in ``tests/test_validity.py`` (populations ``linear`` and
``top_errors``; accepted accuracy at target 0.9 with every method; paired ratio 2% and difference
1 point with every bound; n = 500, delta = 0.1), draw ``--draws`` calibration sets (1,000, as
the tests), certify them in each order and record the violation rate. Settings whose rate is
within noise of delta (above ``delta - 3 sd`` of a Binomial(draws, delta) share) are re-run at
``--rerun`` draws (10,000) in every order, and so are the procedures named by ``--always``
(default: ``betting``, the one that depended on the row order before issue 27).

Usage (one thread; about 10 minutes)::

    OMP_NUM_THREADS=1 python benchmarks/bench_validity_orders.py [--draws 1000] [--rerun 10000] \\
        [--always betting] [--docs docs/evaluation.md]

Writes benchmarks/results/validity_orders.json and validity_orders.md; with ``--docs`` it also
replaces the table between the ``validity_orders`` markers in that page.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from confroute.selection.simulate import (
    ORDERS,
    Population,
    accepted_rows,
    paired_rows,
    summarize_accepted,
    summarize_paired,
)

POPULATIONS = {"linear": Population.linear, "top_errors": Population.top_errors}
ACCEPTED = ("fallback", "single", "multistart", "split", "betting")
PAIRED = ("cp_losses", "conditional", "betting")
N, DELTA, TARGET = 500, 0.1, 0.9


def settings() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pop in POPULATIONS:
        out += [{"population": pop, "objective": "accepted_accuracy", "procedure": m, "target": TARGET} for m in ACCEPTED]
        for kind, eps in (("ratio", 0.02), ("difference", 0.01)):
            out += [{"population": pop, "objective": kind, "procedure": b, "target": eps} for b in PAIRED]
    return out


def violation(s: dict[str, Any], order: str, draws: int, seed: int) -> float:
    pop = POPULATIONS[s["population"]]()
    rng = np.random.default_rng(seed)
    if s["objective"] == "accepted_accuracy":
        rows = accepted_rows(pop, N, s["target"], DELTA, s["procedure"], draws, rng, order=order)
        return summarize_accepted(pop, rows, s["target"])["violation"]
    rows = paired_rows(pop, N, s["objective"], s["target"], DELTA, s["procedure"], draws, rng, order=order)
    return summarize_paired(pop, rows, s["objective"], s["target"])["violation"]


def table(results: list[dict[str, Any]]) -> str:
    head = "| population | objective | procedure | draws | " + " | ".join(ORDERS) + " |"
    lines = [head, "|" + "---|" * (4 + len(ORDERS))]
    for r in results:
        for draws in sorted(r["violation"], key=int):
            cells = " | ".join(f"{r['violation'][draws][o]:.4f}" for o in ORDERS)
            obj = r["objective"] + ("" if r["objective"] == "accepted_accuracy" else f" {r['target']:g}")
            lines.append(f"| {r['population']} | {obj} | {r['procedure']} | {int(draws):,} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--rerun", type=int, default=10000)
    ap.add_argument("--always", nargs="*", default=["betting"])
    ap.add_argument("--docs", type=Path)
    args = ap.parse_args()
    noise = DELTA - 3 * math.sqrt(DELTA * (1 - DELTA) / args.draws)
    results = []
    t0 = time.time()
    for i, s in enumerate(settings()):
        r = dict(s, violation={str(args.draws): {o: violation(s, o, args.draws, 1000 + i) for o in ORDERS}})
        if max(r["violation"][str(args.draws)].values()) > noise or s["procedure"] in args.always:
            r["violation"][str(args.rerun)] = {o: violation(s, o, args.rerun, 5000 + i) for o in ORDERS}
        results.append(r)
        print(s, r["violation"], f"{time.time() - t0:.0f}s", flush=True)
    out = Path(__file__).parent / "results"
    meta = {"delta": DELTA, "n": N, "draws": args.draws, "rerun": args.rerun, "rerun_above": noise,
            "seconds": round(time.time() - t0), "python": platform.python_version(), "numpy": np.__version__,
            "machine": platform.machine()}
    (out / "validity_orders.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    md = (f"Violation rate per row order (delta = {DELTA}, n = {N}); settings above {noise:.3f} at "
          f"{args.draws:,} draws, and {', '.join(args.always) or 'no procedure'} always, re-run at {args.rerun:,}.\n\n" + table(results) + "\n")
    (out / "validity_orders.md").write_text(md)
    if args.docs:
        page = args.docs.read_text()
        a, b = "<!-- validity_orders:start -->", "<!-- validity_orders:end -->"
        head, rest = page.split(a)
        _, tail = rest.split(b)
        args.docs.write_text(head + a + "\n" + md + b + tail)


if __name__ == "__main__":
    main()
