"""Soak benchmark: one million inputs streamed through a router with cheap mock stages.

Measures the routing logic itself (the stages are vectorised numpy lambdas), and checks that
memory stays flat: resident memory is sampled after every chunk.

    python benchmarks/bench_soak.py [--n 1000000] [--chunk-size 10000]

Results go to benchmarks/results/soak.json; the figures are quoted in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from confroute import CallablePredictor, CostModel, Fallback, ThresholdRouter


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def stream(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield float(rng.uniform())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--chunk-size", type=int, default=10_000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "soak.json"))
    args = ap.parse_args()

    def primary(xs):
        x = np.asarray(xs)
        return np.stack([1 - x, x], axis=1)

    def fallback(xs):
        x = np.asarray(xs)
        return np.stack([x < 0.5, x >= 0.5], axis=1).astype(float)

    router = ThresholdRouter(
        CallablePredictor(primary, classes=["neg", "pos"], name="cheap"),
        Fallback(fallback, on_error="keep_previous", name="expensive"),
        threshold=0.8,
        cost_model=CostModel.per_sample([0.001, 0.005]),
    )
    # Warm up (imports, first allocations) before measuring the baseline.
    router.route([0.1, 0.5])
    rss_start = rss_mib()
    samples = []
    n_done = routed = 0
    cost = 0.0
    t0 = time.perf_counter()
    for chunk in router.route_stream(stream(args.n), chunk_size=args.chunk_size):
        n_done += len(chunk)
        routed += int(chunk.reached[1].sum())
        cost += float(chunk.cost.sum())
        samples.append(rss_mib())
    elapsed = time.perf_counter() - t0
    # The input generator itself costs time; measure it alone so the routing rate can be separated.
    t1 = time.perf_counter()
    for _ in stream(args.n):
        pass
    gen_time = time.perf_counter() - t1

    assert n_done == args.n
    out = {
        "n": n_done,
        "chunk_size": args.chunk_size,
        "threads": 1,
        "seconds": round(elapsed, 3),
        "items_per_s": round(n_done / elapsed),
        "items_per_s_excluding_input_generation": round(n_done / max(elapsed - gen_time, 1e-9)),
        "routed_fraction": routed / n_done,
        "total_cost": round(cost, 2),
        "rss_mib_start": round(rss_start, 1),
        "rss_mib_after_first_chunk": round(samples[0], 1),
        "rss_mib_end": round(samples[-1], 1),
        "rss_mib_max_sampled": round(max(samples), 1),
        "peak_rss_mib_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
