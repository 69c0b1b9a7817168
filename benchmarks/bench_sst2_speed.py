"""Benchmark: how much faster the sparse MiniLM is than the dense one, measured two ways.

docs/sst2-study.md's "2.7x faster" (2026-11-28) and the README command's ``--cost measured``
verdict measure different set-ups. This times both in one process, on the same load, the way the
README command does (one untimed warm-up pass, then ``--repeats`` timed passes over all 872 SST-2
dev sentences, models interleaved, median):

* **README** (``confroute evaluate ... --threads 1 --max-length 64``, batch 32): DeepSparse with
  its length buckets (12/40/64) and batches sorted by length; the dense model through the Hugging
  Face pipeline, 1 torch thread, batches sorted by length, truncated at 64 tokens.
* **study 2026-11-28** (examples/sst2_routing.py before length-aware batching landed): DeepSparse
  static 64 tokens, batches in input order; the HF pipeline in input order, no ``max_length``.

Results: ``benchmarks/results/sst2_speed.json`` (with ``os.getloadavg()`` before and after).

Usage::

    python benchmarks/bench_sst2_speed.py [--repeats 3] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from confroute.integrations.io import load_texts

ROOT = Path(__file__).resolve().parents[1]


def _models(shared: Path) -> dict[str, Any]:
    from confroute import DeepSparsePredictor, HFPipelinePredictor

    sparse, dense = shared / "models" / "minilm-sst2-pruned80", shared / "models" / "minilm-sst2-dense"
    return {
        "README sparse": DeepSparsePredictor(str(sparse), batch_size=32, num_cores=1, sequence_length=64),
        "README dense": HFPipelinePredictor(str(dense), batch_size=32, num_threads=1, max_length=64),
        "study sparse": DeepSparsePredictor(str(sparse), batch_size=32, num_cores=1, sequence_length=64,
                                            buckets=None, sort_by_length=False),
        "study dense": HFPipelinePredictor(str(dense), batch_size=32, num_threads=1, sort_by_length=False),
    }


def _pass(model: Any, texts: list[str]) -> float:
    t0 = time.perf_counter()
    model.predict(texts)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shared", default=str(ROOT.parent / "shared"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sst2_speed.json"))
    args = p.parse_args()
    shared = Path(args.shared)
    texts, _ = load_texts(shared / "data" / "sst2" / "dev.tsv")
    texts = list(texts)
    load_before = os.getloadavg()
    models = _models(shared)
    warmup = {name: _pass(m, texts) for name, m in models.items()}  # untimed for the verdict
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, m in models.items():  # interleaved, as the README command does
            seconds[name].append(_pass(m, texts))
    out: dict[str, Any] = {"n": len(texts), "repeats": args.repeats, "threads": 1, "batch_size": 32,
                           "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                           "cpu_count": os.cpu_count(), "warmup_seconds": warmup, "seconds": seconds}
    med = {name: statistics.median(s) for name, s in seconds.items()}
    out["inputs_per_second"] = {name: len(texts) / m for name, m in med.items()}
    out["spread"] = {name: max(s) / min(s) for name, s in seconds.items()}
    out["speedup"] = {"README": med["README dense"] / med["README sparse"],
                      "study 2026-11-28": med["study dense"] / med["study sparse"]}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for name in models:
        print(f"{name:<14} {out['inputs_per_second'][name]:6.1f} inputs/s  (median of {args.repeats}: "
              f"{med[name]:.2f} s; spread {out['spread'][name]:.2f}x; warm-up {warmup[name]:.2f} s)")
    print(f"sparse faster than dense: README set-up {out['speedup']['README']:.2f}x, "
          f"study set-up {out['speedup']['study 2026-11-28']:.2f}x; load {load_before} -> {out['loadavg_after']}")


if __name__ == "__main__":
    main()
