"""Benchmark: how far dynamic int8 takes dense MiniLM on ONNX Runtime, and where the time goes.

Issue 13 asks for a MiniLM path at least 2x as fast as ONNX Runtime float32 (sorted by length)
at >= 0.89 SST-2 dev accuracy. This makes every int8 variant ONNX Runtime's dynamic
quantisation offers from the float32 export of ``minilm-sst2-dense`` and times them the same way
(``ONNXRuntimePredictor``, batch 32, sorted by length, ``--threads`` threads, ``--repeats``
interleaved repeats, medians):

* per-tensor weight scales (``quantize_dynamic``'s defaults),
* per-channel scales,
* per-channel + ``reduce_range`` (:func:`confroute.export.quantize_onnx`'s default),
* the graph fused first by ONNX Runtime's transformer optimizer (Attention, SkipLayerNorm,
  BiasGelu, EmbedLayerNorm), then per-channel + ``reduce_range`` (Attention becomes QAttention),

and then profiles float32 and the default int8 with ONNX Runtime's profiler: the share of kernel
time in the matrix multiplications (what int8 speeds up) and in everything else (LayerNorm,
GELU, softmax, transposes: float32 in both), which bounds the gain.

Needs the quantize environment (``onnxruntime.quantization`` with numpy 2)::

    bash tools/run.sh int8   # once: builds .venv-quantize and the int8 models
    .venv-quantize/bin/python benchmarks/bench_int8_variants.py [--threads 1] [--repeats 5]

Results: ``benchmarks/results/int8_variants.json`` and ``.md``. The variants go to ``--work``
(default ``~/.cache/confroute/int8-variants``), never into the repository.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from confroute.integrations.io import load_texts

ROOT = Path(__file__).resolve().parents[1]
BATCH = 32
GEMM_OPS = {"MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "QAttention", "Attention"}


def _fused_copy(fp32_dir: Path, out_dir: Path) -> Path:
    """fp32_dir's model fused by ONNX Runtime's transformer optimizer, with the tokenizer files."""
    import onnx
    from onnxruntime.transformers import optimizer

    cfg = json.loads((fp32_dir / "config.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in fp32_dir.iterdir():
        if f.name != "model.onnx":
            shutil.copy(f, out_dir / f.name)
    fused = optimizer.optimize_model(str(fp32_dir / "model.onnx"), model_type="bert", opt_level=1,
                                     num_heads=cfg["num_attention_heads"], hidden_size=cfg["hidden_size"])
    onnx.save(fused.model, str(out_dir / "model.onnx"))
    return out_dir


def _kernel_split(model_dir: Path, texts: list[str], threads: int) -> dict[str, Any]:
    """Kernel time by op type over one sorted pass, from ONNX Runtime's profiler."""
    import onnxruntime as ort

    from confroute.predictors import ONNXRuntimePredictor

    p = ONNXRuntimePredictor(model_dir, batch_size=BATCH, num_threads=threads, sort_by_length=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    p.session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    p.predict(texts)
    trace = Path(p.session.end_profiling())
    by_op: collections.Counter[str] = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] * 1e-6
    trace.unlink()
    total = sum(by_op.values())
    gemm = sum(v for k, v in by_op.items() if k in GEMM_OPS)
    return {"kernel_s": total, "matmul_s": gemm, "other_s": total - gemm,
            "top_ops": {k: round(v, 3) for k, v in by_op.most_common(8)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("CONFROUTE_SHARED", ROOT / ".." / "shared")))
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/confroute").expanduser())
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_variants.json")
    ns = parser.parse_args()

    from confroute.predictors import ONNXRuntimePredictor
    from confroute.export import export_to_onnx, quantize_onnx

    texts, labels = load_texts(ns.shared.resolve() / "data" / "sst2" / "dev.tsv")
    texts, labels = list(texts), np.asarray(labels)
    fp32 = ns.cache / "minilm-sst2-dense-onnx"
    if not (fp32 / "model.onnx").is_file():
        export_to_onnx(ns.shared.resolve() / "models" / "minilm-sst2-dense", fp32)
    work = ns.cache / "int8-variants"
    fused = _fused_copy(fp32, work / "fused-fp32")
    variants = {  # name: (source, per_channel, reduce_range)
        "int8 per-tensor": (fp32, False, False),
        "int8 per-channel": (fp32, True, False),
        "int8 per-channel + reduce_range (default)": (fp32, True, True),
        "fused graph, int8 per-channel + reduce_range": (fused, True, True),
    }
    dirs = {"fp32": fp32}
    for name, (src, per_channel, reduce_range) in variants.items():
        out = work / name.replace(" ", "_").replace(",", "").replace("+", "plus").replace("(", "").replace(")", "")
        quantize_onnx(src, out, per_channel=per_channel, reduce_range=reduce_range, check_texts=texts[:64],
                      overwrite=True)
        dirs[name] = out

    predictors = {name: ONNXRuntimePredictor(d, batch_size=BATCH, num_threads=ns.threads, sort_by_length=True)
                  for name, d in dirs.items()}
    accuracy = {name: float(np.mean(p.predict(texts).label_index == labels)) for name, p in predictors.items()}
    times: dict[str, list[float]] = {name: [] for name in predictors}
    for rep in range(ns.repeats):
        for name, p in predictors.items():
            start = time.perf_counter()
            p.predict(texts)
            times[name].append(time.perf_counter() - start)
        print(f"repeat {rep + 1}/{ns.repeats}: " + ", ".join(f"{k} {len(texts) / v[-1]:.0f}/s" for k, v in times.items()),
              flush=True)
    sps = {name: len(texts) / float(np.median(t)) for name, t in times.items()}
    # Per-repeat ratios (same repeat, so the same machine load) show the spread of the ratio.
    ratios = {name: [t0 / t1 for t0, t1 in zip(times["fp32"], t)] for name, t in times.items() if name != "fp32"}
    split = {name: _kernel_split(dirs[name], texts, ns.threads)
             for name in ("fp32", "int8 per-channel + reduce_range (default)")}

    result = {
        "benchmark": "dynamic int8 variants of dense MiniLM on ONNX Runtime, sorted by length (issue 13)",
        "threads": ns.threads, "batch_size": BATCH, "repeats": ns.repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "rows": {name: {"accuracy": accuracy[name], "samples_per_s": sps[name], "times_s": times[name],
                        "vs_fp32": sps[name] / sps["fp32"], "vs_fp32_per_repeat": ratios.get(name)}
                 for name in predictors},
        "kernel_split": split,
    }
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| ONNX Runtime, dense MiniLM, sorted | accuracy | sentences/s | vs fp32 (median) | vs fp32, per repeat |",
             "|---|---:|---:|---:|---|"]
    for name in predictors:
        per = ", ".join(f"{r:.2f}" for r in ratios[name]) if name in ratios else ""
        lines.append(f"| {name} | {accuracy[name]:.4f} | {sps[name]:.1f} | {sps[name] / sps['fp32']:.2f}x | {per} |")
    lines += ["", "| profiled pass | kernel s | matmul s | other s | top ops (s) |", "|---|---:|---:|---:|---|"]
    for name, s in split.items():
        lines.append(f"| {name} | {s['kernel_s']:.2f} | {s['matmul_s']:.2f} | {s['other_s']:.2f} | "
                     + ", ".join(f"{k} {v}" for k, v in s["top_ops"].items()) + " |")
    lines.append(f"\nBatch {BATCH}, {ns.threads} thread(s), median of {ns.repeats} interleaved repeats over "
                 f"{len(texts)} SST-2 dev sentences.\n")
    ns.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
