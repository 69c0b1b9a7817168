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


def identity(pop: Population, levels: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Rows read as passed (the betting test before issue 27)."""
    return np.broadcast_to(np.arange(levels.shape[1]), levels.shape)


def main() -> None:
    library = simulate.library_order
    for name, pop in (("linear", Population.linear()), ("agree", Population.agree())):
        for label, order_fn in (("before (rows as passed)", identity), ("after (betting_order)", library)):
            simulate.library_order = order_fn
            out = []
            for o in ORDERS:
                rng = np.random.default_rng(7)
                b = paired_rows(pop, 2000, "difference", 0.01, 0.05, "betting", 200, rng, order=o)
                c = paired_rows(pop, 2000, "difference", 0.01, 0.05, "cp_losses", 200, np.random.default_rng(7), order=o)
                vb = summarize_paired(pop, b, "difference", 0.01)["violation"]
                vc = summarize_paired(pop, c, "difference", 0.01)["violation"]
                out.append(f"{o}: betting {vb:.3f} cp_losses {vc:.3f}")
            print(name, label, "; ".join(out), flush=True)
    simulate.library_order = library


if __name__ == "__main__":
    main()
