"""Benchmark: how fast each cheap-stage path runs on the 872 SST-2 dev sentences, and why.

Every configuration predicts all 872 sentences at batch size 32 on ``--threads`` threads (default
one) per backend, ``--repeats`` times (default 3), **interleaved** (repeat 1 of every
configuration, then repeat 2, ...), so that load from other jobs on a shared machine hits them
all alike; the figures are medians, and the ratios between configurations are the result. Each
configuration first predicts the whole set once untimed (warm-up, DeepSparse bucket compilation,
and the accuracy check).

The comparisons (issue 13):

* **input order vs sorted by length** (``sort_by_length``): ONNX Runtime (dense fp32, dense int8,
  pruned80 fp32 and int8), the MPNet int8 fallback and, with ``--hf``, the HF pipeline,
* **fp32 vs int8** (dynamic quantisation, made by ``benchmarks/make_int8.py``),
* **DeepSparse static 64 tokens vs length buckets** (the default buckets up to 64 tokens, and the
  buckets ``tune_buckets()`` keeps on this machine; ``bench_deepsparse_lengths.py`` shows why),
* **wrapper overhead**: the predictor (tokenise, sort, pad, run, softmax, checks, restore order)
  against the bare runtime (``session.run`` / ``engine.run`` only) on the same padded token-id
  batches, prepared beforehand,
* **tokenisation share**: one ``tokenize`` of the 872 sentences against the predictor's time.

The int8 models come from ``--cache`` (default ``~/.cache/confroute``, written by
``benchmarks/make_int8.py``, which needs the quantize environment: ``bash tools/run.sh int8``);
the dense fp32 export is made there too when missing. Results: ``benchmarks/results/backends.json``
and a Markdown table in ``benchmarks/results/backends.md``.

Usage::

    python benchmarks/bench_backends.py [--threads 1] [--repeats 3] [--hf] [--shared ../shared] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from confroute.integrations.io import load_texts

ROOT = Path(__file__).resolve().parents[1]
BATCH = 32
STATIC_TOKENS = 64


@dataclass
class Config:
    key: str
    backend: str
    model: str
    precision: str
    shapes: str
    order: str
    make: Callable[[], Any]
    bare: bool = False  # also time the bare runtime on the same batches
    predictor: Any = None
    times: list[float] = field(default_factory=list)
    bare_times: list[float] = field(default_factory=list)
    accuracy: float = float("nan")
    bare_batches: list[Any] = field(default_factory=list)


def _configs(shared: Path, cache: Path, threads: int, hf: bool) -> list[Config]:
    from confroute.predictors import DeepSparsePredictor, HFPipelinePredictor, ONNXRuntimePredictor
    from confroute.predictors.deepsparse import DEFAULT_BUCKETS

    models = shared / "models"
    paths = {
        "dense fp32": cache / "minilm-sst2-dense-onnx",
        "dense int8": cache / "minilm-sst2-dense-int8",
        "pruned80 fp32": models / "minilm-sst2-pruned80",
        "pruned80 int8": cache / "minilm-sst2-pruned80-int8",
        "mpnet int8": models / "mpnet-sst2-int8",
    }
    out = []
    for label, path in paths.items():
        model, precision = label.split()
        for order, sort in (("input", False), ("sorted", True)):
            out.append(Config(
                f"onnxruntime:{model}:{precision}:dynamic:{order}", "onnxruntime", model, precision, "dynamic", order,
                lambda p=path, s=sort: ONNXRuntimePredictor(p, batch_size=BATCH, num_threads=threads, sort_by_length=s),
                bare=sort and label in ("dense int8", "pruned80 fp32"),
            ))
    pruned = paths["pruned80 fp32"]
    out.append(Config(
        f"deepsparse:pruned80:fp32:static{STATIC_TOKENS}:input", "deepsparse", "pruned80", "fp32",
        f"static {STATIC_TOKENS}", "input",
        lambda: DeepSparsePredictor(pruned, batch_size=BATCH, num_cores=threads, sequence_length=STATIC_TOKENS,
                                    buckets=None, sort_by_length=False),
    ))
    default = "/".join(str(b) for b in DEFAULT_BUCKETS if b <= STATIC_TOKENS)
    out.append(Config(
        "deepsparse:pruned80:fp32:buckets:sorted", "deepsparse", "pruned80", "fp32", f"buckets {default}", "sorted",
        lambda: DeepSparsePredictor(pruned, batch_size=BATCH, num_cores=threads, sequence_length=STATIC_TOKENS),
        bare=True,
    ))

    def tuned() -> DeepSparsePredictor:
        p = DeepSparsePredictor(pruned, batch_size=BATCH, num_cores=threads, sequence_length=STATIC_TOKENS)
        p.tune_buckets(repeats=5)
        print(f"tune_buckets kept {p.buckets}", flush=True)
        return p

    out.append(Config(
        "deepsparse:pruned80:fp32:tuned-buckets:sorted", "deepsparse", "pruned80", "fp32", "tune_buckets()",
        "sorted", tuned,
    ))
    if hf:
        dense = models / "minilm-sst2-dense"
        for order, sort in (("input", False), ("sorted", True)):
            out.append(Config(
                f"hf-pipeline:dense:fp32:dynamic:{order}", "hf-pipeline", "dense", "fp32", "dynamic", order,
                lambda s=sort: HFPipelinePredictor(dense, batch_size=BATCH, num_threads=threads, sort_by_length=s),
            ))
    return out


def _bare_batches(predictor: Any, texts: list[str]) -> list[Any]:
    """The exact padded batches the predictor runs, as (runner, feed) pairs, built untimed."""
    from confroute.predictors import DeepSparsePredictor
    from confroute.predictors._text import length_order

    tokens = predictor.encoder.tokenize(texts)
    order = length_order(tokens.lengths) if predictor.sort_by_length else np.arange(len(texts))
    batches = []
    for i in range(0, len(texts), BATCH):
        part = tokens.take(order[i : i + BATCH])
        if isinstance(predictor, DeepSparsePredictor):
            width = predictor.bucket_for(int(part.lengths.max()))
            arrays = predictor.encoder.pad(part, width).pad_rows(BATCH).arrays
            engine = predictor._engine_for(width)
            batches.append((engine.run, [arrays[k] for k in predictor._input_names]))
        else:
            feed = predictor._feed(predictor.encoder.pad(part))
            session, output = predictor.session, predictor._output
            batches.append((lambda f, s=session, o=output: s.run([o], f), feed))
    return batches


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads/cores per backend (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hf", action="store_true", help="also the HF pipeline (PyTorch), input order and sorted")
    parser.add_argument("--only", default=None, help="comma-separated substrings: run matching configurations only")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("CONFROUTE_SHARED", ROOT / ".." / "shared")))
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/confroute").expanduser())
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only (smoke tests)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backends.json")
    ns = parser.parse_args()

    shared = ns.shared.resolve()
    texts, labels = load_texts(shared / "data" / "sst2" / "dev.tsv")
    texts, labels = list(texts)[: ns.limit], np.asarray(labels)[: ns.limit]
    dense_onnx = ns.cache / "minilm-sst2-dense-onnx"
    if not (dense_onnx / "model.onnx").is_file():
        from confroute.export import export_to_onnx

        r = export_to_onnx(shared / "models" / "minilm-sst2-dense", dense_onnx)
        print(f"exported dense model to {r.onnx_path} (max |logit diff| {r.max_abs_diff:.1e})")
    for name in ("minilm-sst2-dense-int8", "minilm-sst2-pruned80-int8"):
        if not (ns.cache / name / "model.onnx").is_file():
            raise SystemExit(f"{ns.cache / name} is missing: make the int8 models first with "
                             "`bash tools/run.sh int8` (runs benchmarks/make_int8.py in the quantize environment)")

    configs = _configs(shared, ns.cache, ns.threads, ns.hf)
    if ns.only:
        wanted = ns.only.split(",")
        configs = [c for c in configs if any(w in c.key for w in wanted)]
    for c in configs:
        t0 = time.perf_counter()
        c.predictor = c.make()
        if ":tuned-buckets:" in c.key:
            c.shapes = "tune_buckets(): " + "/".join(map(str, c.predictor.buckets))
        out = c.predictor.predict(texts)  # warm-up (and bucket compilation) + accuracy
        c.accuracy = float(np.mean(out.label_index == labels))
        if c.bare:
            c.bare_batches = _bare_batches(c.predictor, texts)
        print(f"ready {c.key:<48} acc {c.accuracy:.4f} ({time.perf_counter() - t0:.1f}s)", flush=True)

    token_times = []
    tokenizer_owner = next(c.predictor for c in configs if hasattr(c.predictor, "encoder"))
    for rep in range(ns.repeats):
        for c in configs:
            c.times.append(_timed(lambda: c.predictor.predict(texts)))
            if c.bare:
                c.bare_times.append(_timed(lambda: [run(feed) for run, feed in c.bare_batches]))
        token_times.append(_timed(lambda: tokenizer_owner.encoder._encode_fast(texts)))
        print(f"repeat {rep + 1}/{ns.repeats}: " + ", ".join(
            f"{c.key.split(':', 1)[1]} {len(texts) / c.times[-1]:.0f}/s" for c in configs), flush=True)

    rows = []
    for c in configs:
        median = float(np.median(c.times))
        row = {"key": c.key, "backend": c.backend, "model": c.model, "precision": c.precision,
               "shapes": c.shapes, "order": c.order, "batch_size": BATCH, "n_sentences": len(texts),
               "samples_per_s": len(texts) / median, "median_s": median, "times_s": c.times,
               "accuracy": c.accuracy}
        if c.bare:
            bare = float(np.median(c.bare_times))
            row.update(bare_median_s=bare, bare_times_s=c.bare_times, bare_samples_per_s=len(texts) / bare,
                       wrapper_overhead=median / bare - 1.0)
        rows.append(row)
    by_key = {r["key"]: r for r in rows}
    ratios = _ratios(by_key)
    tokenize_s = float(np.median(token_times))
    result = {
        "benchmark": "cheap-stage paths on SST-2 dev (issue 13)",
        "threads": ns.threads,
        "batch_size": BATCH,
        "repeats": ns.repeats,
        "note": ("2-core machine shared with other jobs while measuring; configurations interleaved per "
                 "repeat, medians of the repeats; read the ratios, not the absolute figures"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "tokenize_all_s": tokenize_s,
        "ratios": ratios,
        "samples_per_s": {r["key"]: {str(BATCH): round(r["samples_per_s"], 2)} for r in rows},
        "rows": rows,
    }
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(rows, ratios, tokenize_s, ns.threads, ns.repeats, len(texts))
    ns.out.with_suffix(".md").write_text(table)
    print(f"\nwrote {ns.out}\n\n{table}")


def _ratios(by_key: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def sps(key: str) -> float | None:
        return by_key[key]["samples_per_s"] if key in by_key else None

    out: dict[str, Any] = {}
    for key in by_key:
        if key.endswith(":sorted") and key.startswith(("onnxruntime:", "hf-pipeline:")):
            base = key[: -len("sorted")] + "input"
            if base in by_key:
                backend, model, precision = key.split(":")[:3]
                out[f"sorted_vs_input:{backend}:{model}:{precision}"] = sps(key) / sps(base)
    ds_b, ds_s = "deepsparse:pruned80:fp32:buckets:sorted", f"deepsparse:pruned80:fp32:static{STATIC_TOKENS}:input"
    if ds_b in by_key and ds_s in by_key:
        out["deepsparse_buckets_vs_static64"] = sps(ds_b) / sps(ds_s)
    ds_t = "deepsparse:pruned80:fp32:tuned-buckets:sorted"
    if ds_t in by_key and ds_s in by_key:
        out["deepsparse_tuned_buckets_vs_static64"] = sps(ds_t) / sps(ds_s)
    ref = "onnxruntime:dense:fp32:dynamic:sorted"
    minilm = [r for k, r in by_key.items() if ":mpnet:" not in k and r["accuracy"] >= 0.89 and k != ref
              and k.startswith(("onnxruntime:", "deepsparse:"))]
    if ref in by_key and minilm:
        best = max(minilm, key=lambda r: r["samples_per_s"])
        out["cheapest_minilm_at_0.89"] = {"key": best["key"], "accuracy": best["accuracy"],
                                          "vs_ort_fp32_dense_sorted": best["samples_per_s"] / sps(ref)}
    for k, r in by_key.items():
        if "wrapper_overhead" in r:
            out[f"wrapper_overhead:{k}"] = r["wrapper_overhead"]
    return out


def markdown(rows: list[dict[str, Any]], ratios: dict[str, Any], tokenize_s: float, threads: int,
             repeats: int, n: int) -> str:
    lines = [
        "| backend | model | weights | shapes | batch order | sentences/s | accuracy | bare runtime sentences/s | wrapper overhead |",
        "|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        bare = f"{r['bare_samples_per_s']:.1f}" if "bare_samples_per_s" in r else ""
        over = f"{100 * r['wrapper_overhead']:+.1f}%" if "wrapper_overhead" in r else ""
        lines.append(f"| {r['backend']} | {r['model']} | {r['precision']} | {r['shapes']} | {r['order']} | "
                     f"{r['samples_per_s']:.1f} | {r['accuracy']:.4f} | {bare} | {over} |")
    lines.append("")
    for k, v in ratios.items():
        if isinstance(v, dict):
            lines.append(f"- {k}: {v['key']} (accuracy {v['accuracy']:.4f}), "
                         f"{v['vs_ort_fp32_dense_sorted']:.2f}x ONNX Runtime fp32 dense sorted")
        elif k.startswith("wrapper_overhead"):
            lines.append(f"- {k}: {100 * v:+.1f}%")
        else:
            lines.append(f"- {k}: {v:.2f}x")
    fastest = max(r["samples_per_s"] for r in rows if r["model"] != "mpnet")
    lines.append(f"- tokenising all {n} sentences once: {1e3 * tokenize_s:.0f} ms "
                 f"({100 * tokenize_s * fastest / n:.1f}% of the fastest MiniLM path's time)")
    lines.append(f"\nBatch {BATCH}, {threads} thread(s) per backend, median of {repeats} interleaved repeats "
                 f"over {n} SST-2 dev sentences.\n")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
