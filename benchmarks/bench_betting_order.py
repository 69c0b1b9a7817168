"""Betting before and after issue 27: the issue's setting (paired difference, max drop 1 point,
n = 2,000, delta = 0.05, 200 draws) in five row orders, with the rows read as passed (the betting
test before issue 27, simulated by replacing the library's order with the identity) and in the
library's order (:func:`confroute.selection.bounds.betting_order`), against ``cp_losses``.

Usage (one thread; about 3 minutes)::

    OMP_NUM_THREADS=1 python benchmarks/bench_betting_order.py

Prints one line per population and reading order (results quoted in docs/evaluation.md).
"""
from __future__ import annotations

import numpy as np
from confroute.selection import simulate
from confroute.selection.simulate import ORDERS, Population, paired_rows, summarize_paired
orig = simulate._betting_perm
ident = lambda pop, levels, cells: np.broadcast_to(np.arange(levels.shape[1]), levels.shape)
for name, pop in (("linear", Population.linear()), ("agree", Population.agree())):
    for label, perm in (("before (rows as passed)", ident), ("after (betting_order)", orig)):
        simulate._betting_perm = perm
        out = []
        for o in ORDERS:
            b = paired_rows(pop, 2000, "difference", 0.01, 0.05, "betting", 200, np.random.default_rng(7), order=o)
            c = paired_rows(pop, 2000, "difference", 0.01, 0.05, "cp_losses", 200, np.random.default_rng(7), order=o)
            out.append(f"{o}: betting {summarize_paired(pop, b, 'difference', 0.01)['violation']:.3f} cp_losses {summarize_paired(pop, c, 'difference', 0.01)['violation']:.3f}")
        print(name, label, "; ".join(out), flush=True)
