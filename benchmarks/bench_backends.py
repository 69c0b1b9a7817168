"""Benchmark: throughput and per-batch latency of the backends on the 872 SST-2 dev sentences.

Configurations (all on one CPU thread unless ``--threads`` says otherwise):

* DeepSparse on the pruned model (static shapes: batch x 64 tokens),
* ONNX Runtime on the pruned model, static 64 tokens (as DeepSparse) and dynamic (pad to the
  longest sentence of each batch),
* ONNX Runtime on the dense model exported with ``confroute.export_to_onnx``, static and dynamic,
* the Hugging Face pipeline on the dense model (dynamic padding),

each at batch sizes 1, 8 and 32. Batch size 1 runs on the first ``--batch1-limit`` sentences
(default 200) to keep the run short; the others run on all 872. Every configuration predicts one
warm-up batch first, and checks its accuracy on the sentences it saw.

The dense export goes to ``--cache`` (default ``~/.cache/confroute``), never into the repository
or the shared folder. Results go to ``benchmarks/results/backends.json`` (with ``samples_per_s``
per backend and batch size, ready for ``CostModel.hourly``) and a Markdown table to
``benchmarks/results/backends.md``.

Usage::

    python benchmarks/bench_backends.py [--threads 1] [--shared ../shared] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from confroute.integrations.io import load_texts

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 8, 32)
STATIC_TOKENS = 64


def _configs(shared: Path, dense_onnx: Path, threads: int) -> list[tuple[str, str, str, Callable[[int], Any]]]:
    from confroute.predictors import DeepSparsePredictor, HFPipelinePredictor, ONNXRuntimePredictor

    pruned = shared / "models" / "minilm-sst2-pruned80"
    dense = shared / "models" / "minilm-sst2-dense"
    return [
        ("deepsparse", "pruned80", f"static {STATIC_TOKENS}",
         lambda bs: DeepSparsePredictor(pruned, batch_size=bs, num_cores=threads, sequence_length=STATIC_TOKENS)),
        ("onnxruntime", "pruned80", f"static {STATIC_TOKENS}",
         lambda bs: ONNXRuntimePredictor(pruned, batch_size=bs, num_threads=threads, sequence_length=STATIC_TOKENS)),
        ("onnxruntime", "pruned80", "dynamic",
         lambda bs: ONNXRuntimePredictor(pruned, batch_size=bs, num_threads=threads)),
        ("onnxruntime", "dense", f"static {STATIC_TOKENS}",
         lambda bs: ONNXRuntimePredictor(dense_onnx, batch_size=bs, num_threads=threads, sequence_length=STATIC_TOKENS)),
        ("onnxruntime", "dense", "dynamic",
         lambda bs: ONNXRuntimePredictor(dense_onnx, batch_size=bs, num_threads=threads)),
        ("hf-pipeline", "dense", "dynamic",
         lambda bs: HFPipelinePredictor(dense, batch_size=bs, num_threads=threads)),
    ]


def run_one(make: Callable[[int], Any], batch_size: int, texts: list[str], labels: np.ndarray) -> dict[str, Any]:
    t0 = time.perf_counter()
    predictor = make(batch_size)
    build_s = time.perf_counter() - t0
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    predictor.predict(batches[0])  # warm-up: first-call allocations, lazy initialisation
    latencies, predicted = [], []
    start = time.perf_counter()
    for batch in batches:
        t = time.perf_counter()
        out = predictor.predict(batch)
        latencies.append(time.perf_counter() - t)
        predicted.append(out.labels)
    total = time.perf_counter() - start
    lat_ms = np.asarray(latencies) * 1e3
    return {
        "batch_size": batch_size,
        "n_sentences": len(texts),
        "samples_per_s": len(texts) / total,
        "latency_ms_p50": float(np.percentile(lat_ms, 50)),
        "latency_ms_p95": float(np.percentile(lat_ms, 95)),
        "total_s": total,
        "build_s": build_s,
        "accuracy": float(np.mean(np.concatenate(predicted) == labels)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads/cores per backend (default 1)")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("CONFROUTE_SHARED", ROOT / ".." / "shared")))
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/confroute").expanduser())
    parser.add_argument("--batch1-limit", type=int, default=200, help="sentences for batch size 1")
    parser.add_argument("--limit", type=int, default=None, help="cap every run (smoke tests)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backends.json")
    ns = parser.parse_args()

    shared = ns.shared.resolve()
    texts, labels = load_texts(shared / "data" / "sst2" / "dev.tsv")
    dense_onnx = ns.cache / "minilm-sst2-dense-onnx"
    if not (dense_onnx / "model.onnx").is_file():
        from confroute.predictors.export import export_to_onnx

        r = export_to_onnx(shared / "models" / "minilm-sst2-dense", dense_onnx)
        print(f"exported dense model to {r.onnx_path} (max |logit diff| {r.max_abs_diff:.1e})")

    rows = []
    for backend, model, shapes, make in _configs(shared, dense_onnx, ns.threads):
        for bs in BATCH_SIZES:
            n = ns.batch1_limit if bs == 1 else len(texts)
            n = min(n, ns.limit) if ns.limit else n
            r = run_one(make, bs, texts[:n], labels[:n])
            r.update(backend=backend, model=model, shapes=shapes)
            rows.append(r)
            print(f"{backend:<12} {model:<9} {shapes:<10} bs={bs:<3} n={n:<4} {r['samples_per_s']:8.1f}/s "
                  f"p50 {r['latency_ms_p50']:8.2f} ms  p95 {r['latency_ms_p95']:8.2f} ms  acc {r['accuracy']:.4f}",
                  flush=True)

    samples_per_s: dict[str, dict[str, float]] = {}
    for r in rows:
        key = f"{r['backend']}:{r['model']}:{r['shapes'].replace(' ', '')}"
        samples_per_s.setdefault(key, {})[str(r["batch_size"])] = round(r["samples_per_s"], 2)
    result = {
        "benchmark": "backends on SST-2 dev",
        "threads": ns.threads,
        "note": ("one machine shared with other jobs while measuring: figures are noisy; compare "
                 "configurations measured in the same run, not across runs"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "batch1_sentences": ns.batch1_limit,
        "static_tokens": STATIC_TOKENS,
        "samples_per_s": samples_per_s,
        "rows": rows,
    }
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown_table(rows, ns.threads)
    ns.out.with_suffix(".md").write_text(table)
    print(f"\nwrote {ns.out}\n\n{table}")


def markdown_table(rows: list[dict[str, Any]], threads: int) -> str:
    lines = [
        "| backend | model | shapes | batch | sentences | sentences/s | p50 ms/batch | p95 ms/batch | accuracy |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['model']} | {r['shapes']} | {r['batch_size']} | {r['n_sentences']} | "
            f"{r['samples_per_s']:.1f} | {r['latency_ms_p50']:.1f} | {r['latency_ms_p95']:.1f} | "
            f"{r['accuracy']:.4f} |"
        )
    lines.append(f"\n{threads} thread(s) per backend.\n")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
