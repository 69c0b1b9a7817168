"""Benchmark: evaluate() on 1,000,000 precomputed predictions against a per-threshold loop.

evaluate() sweeps every distinct threshold (about a million here) with one sort and cumulative
sums. The baseline is the straightforward loop: for each threshold, mask the arrays and compute
coverage, accuracy on accepted inputs, system accuracy and cost, which is O(n) per threshold.
Running the loop over a million thresholds would take hours, so it runs on an evenly spaced
subsample of thresholds and its time is extrapolated linearly (each iteration does the same
O(n) work whatever the threshold). Both use the same arrays.

Usage::

    python benchmarks/bench_evaluate.py [--n 1000000] [--loop-thresholds 200] [--repeat 3]

Prints a table and writes benchmarks/results/bench_evaluate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from confroute.evaluation.evaluate import evaluate


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 2)) * 3
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = (rng.random(n) < probs[:, 1]).astype(np.int64)
    fallback = np.where(rng.random(n) < 0.95, labels, 1 - labels)
    return probs, labels, fallback


def loop_once(scores, pc, fc, thresholds, c0, c1):
    n = scores.size
    rows = []
    for t in thresholds:
        acc = scores >= t
        m = int(acc.sum())
        rows.append((t, m / n, pc[acc].mean() if m else np.nan,
                     (pc[acc].sum() + fc[~acc].sum()) / n, n * c0 + (n - m) * c1))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--loop-thresholds", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_evaluate.json"))
    args = ap.parse_args()

    probs, labels, fallback = make_data(args.n)
    prices = [0.001, 0.005]
    evaluate(labels=labels[:1000], primary=probs[:1000], fallback=fallback[:1000], cost_model=prices)

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = evaluate(labels=labels, primary=probs, fallback=fallback, cost_model=prices)
        times.append(time.perf_counter() - t0)
    t_eval = min(times)
    d = res.n_thresholds - 1  # distinct thresholds (the table adds the accept-nothing row)

    # The loop baseline on the same arrays: scores and correctness precomputed once, not timed.
    scores = probs.max(axis=1)
    pc = probs.argmax(axis=1) == labels
    fc = fallback == labels
    distinct = res.table["threshold"][1:]
    sample = distinct[np.linspace(0, d - 1, min(args.loop_thresholds, d)).astype(int)]
    t0 = time.perf_counter()
    rows = loop_once(scores, pc, fc, sample, *prices)
    t_loop_sample = time.perf_counter() - t0
    per_threshold = t_loop_sample / len(sample)
    t_loop_all = per_threshold * d

    # The loop and the sweep agree where they overlap.
    for t, cov, acc, sys_acc, cost in rows[:: max(1, len(rows) // 20)]:
        p = res.at(t)
        assert abs(p.coverage - cov) < 1e-12 and abs(p.system_accuracy - sys_acc) < 1e-12
        assert abs(p.cost - cost) < 1e-6 * max(1.0, cost)

    out = {
        "n": args.n,
        "distinct_thresholds": int(d),
        "evaluate_seconds": round(t_eval, 4),
        "evaluate_seconds_all_runs": [round(t, 4) for t in times],
        "loop_thresholds_timed": len(sample),
        "loop_seconds_per_threshold": per_threshold,
        "loop_seconds_all_thresholds_extrapolated": round(t_loop_all, 1),
        "speedup": round(t_loop_all / t_eval),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
    }
    print(f"n = {args.n:,} predictions, {d:,} distinct thresholds")
    print(f"evaluate() full sweep          {t_eval:10.3f} s   (best of {args.repeat})")
    print(f"per-threshold loop             {per_threshold * 1e3:10.3f} ms per threshold "
          f"({len(sample)} timed)")
    print(f"loop over all thresholds       {t_loop_all:10.0f} s   (extrapolated, {t_loop_all / 3600:.1f} h)")
    print(f"speed-up                       {t_loop_all / t_eval:10.0f} x")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
