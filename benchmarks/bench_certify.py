"""Simulation: how much each certificate covers, and how often it is wrong.

For each population of :mod:`confroute.selection.simulate` (exact truth per threshold), each
calibration size and each method, draw ``--draws`` calibration sets, certify, and record

* the violation rate: the share of draws whose chosen threshold misses the target in the
  population (must stay <= delta up to binomial noise);
* the mean population coverage of the chosen threshold (0 when nothing is certified);
* the oracle: the largest population coverage that meets the target.

Accepted accuracy ("accuracy on accepted inputs >= target"): the fixed-sequence variants of
:func:`confroute.selection.accepted.select_accepted` (single chain, multi-start, fallback procedure
with several restart shares), Learn-then-Test with a learned order on a 30% split, and betting on
a 32-point quantile grid. Paired relative accuracy ("system >= (1 - eps) x reference"): the bounds
of :func:`confroute.selection.paired.select_paired` and betting, against the unpaired
Clopper–Pearson bound on the system's accuracy (the rule before paired bounds).

Usage (one thread; ~2-4 min at the default 1,000 draws)::

    OMP_NUM_THREADS=1 python benchmarks/bench_certify.py [--draws 1000] [--docs docs/evaluation.md]

Writes benchmarks/results/certify.json and certify.md; with ``--docs`` it also replaces the table
between the ``bench_certify`` markers in that page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from confroute.selection.simulate import (
    Population,
    accepted_rows,
    paired_rows,
    summarize_accepted,
    summarize_paired,
)

ROOT = Path(__file__).resolve().parents[1]
ACCEPTED_SETTINGS = ((0.9, 0.05), (0.95, 0.1))
PAIRED_SETTINGS = (("ratio", 0.005, 0.05), ("ratio", 0.02, 0.05), ("difference", 0.01, 0.05))


def populations() -> list[Population]:
    return [Population.linear(), Population.ties(), Population.perfect(), Population.top_errors(),
            Population.agree()]


ACCEPTED_METHODS = ("single", "multistart", "split", "betting", "fallback:0", "fallback")
PAIRED_METHODS = ("unpaired", "cp_losses", "conditional", "betting")


def run(draws: int, sizes: tuple[int, ...], seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for pop in populations():
        for n in sizes:
            for target, delta in ACCEPTED_SETTINGS:
                base = {"objective": "accepted_accuracy", "population": pop.name, "n": n, "target": target,
                        "delta": delta, "oracle": pop.oracle_accepted(target)}
                for method in ACCEPTED_METHODS:
                    t0 = time.perf_counter()
                    r = accepted_rows(pop, n, target, delta, method, draws, rng)
                    rows.append(base | {"method": method, "seconds": time.perf_counter() - t0}
                                | summarize_accepted(pop, r, target))
            for kind, eps, delta in PAIRED_SETTINGS:
                base = {"objective": f"paired_{kind}", "population": pop.name, "n": n, "target": eps,
                        "delta": delta, "oracle": pop.oracle_paired(eps, kind)}
                for bound in PAIRED_METHODS:
                    t0 = time.perf_counter()
                    r = paired_rows(pop, n, kind, eps, delta, bound, draws, rng)
                    rows.append(base | {"method": bound, "seconds": time.perf_counter() - t0}
                                | summarize_paired(pop, r, kind, eps))
    return {"draws": draws, "seed": seed, "rows": rows,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "threads": os.environ.get("OMP_NUM_THREADS", "unset")}


def markdown(res: dict[str, Any]) -> str:
    lines = [f"{res['draws']} calibration draws per cell; violation rate / mean population coverage "
             f"(oracle: the best coverage that meets the target in the population).", ""]
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in res["rows"]:
        by.setdefault((r["objective"], r["target"], r["delta"]), []).append(r)
    for (obj, target, delta), rs in by.items():
        methods = list(dict.fromkeys(r["method"] for r in rs))
        what = (f"accuracy on accepted inputs >= {target}" if obj == "accepted_accuracy"
                else f"system >= (1 - {target}) x reference" if obj == "paired_ratio"
                else f"system >= reference - {target}")
        lines += [f"**{what}, delta = {delta}**", "",
                  "| population | n | oracle | " + " | ".join(methods) + " |",
                  "|---|---|---|" + "---|" * len(methods)]
        keys = list(dict.fromkeys((r["population"], r["n"]) for r in rs))
        for pop, n in keys:
            cells = {r["method"]: r for r in rs if r["population"] == pop and r["n"] == n}
            oracle = next(iter(cells.values()))["oracle"]
            lines.append(f"| {pop} | {n} | {oracle:.3f} | " + " | ".join(
                f"{cells[m]['violation']:.3f} / {cells[m]['coverage']:.3f}" for m in methods) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/certify"))
    ap.add_argument("--docs", help="replace the table between the bench_certify markers in this file")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args.draws, tuple(args.sizes), args.seed)
    res["seconds"] = time.perf_counter() - t0
    md = markdown(res)
    print(md)
    print(f"{res['seconds']:.0f} s on {res['machine']}, OMP_NUM_THREADS={res['threads']}")
    Path(args.out + ".json").write_text(json.dumps(res, indent=1) + "\n")
    Path(args.out + ".md").write_text(md + "\n")
    if args.docs:
        page = Path(args.docs)
        text = page.read_text()
        start, end = "<!-- bench_certify:start -->", "<!-- bench_certify:end -->"
        if start not in text or end not in text:
            raise SystemExit(f"{page} has no {start} ... {end} markers")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        page.write_text(f"{head}{start}\n{md}\n{end}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
