"""Benchmark: a batch-invariant MPNet fallback (issue 25, item 2).

The shared fallback ``../shared/models/mpnet-sst2-int8`` is dynamically quantised: activations are
quantised with one scale per batch, so a sentence's probabilities depend on the sentences sharing
its batch, and the service runs it one sentence per call. Its float32 export was not kept, so
the candidates are built from it (``make``, in the quantize environment, numpy 2):

* ``wq``: weight-only int8 -- the same int8 weights dequantised into float32 MatMuls, float32
  activations (``benchmarks/dequantize_int8.py``);
* ``static-<method>``: static (calibrated) QDQ int8 of ``wq`` through
  ``confroute.export.quantize_onnx(mode="static")`` (what ``confroute export --quantize static``
  runs), calibrated on ``--n-calib`` SST-2 *train* sentences (seed 0);
* ``rowwise``: the shared dynamic int8 model with every activation row quantised on its own
  (``confroute.export.rowwise_int8``, what ``confroute export MPNET OUT --quantize rowwise``
  runs); built by ``measure`` itself when missing (it needs only onnx, so either environment).

``measure`` runs each model with ONNX Runtime (``ONNXRuntimePredictor``, ``--threads`` threads,
default 1) and reports

* batch invariance: the same ``--n-inv`` (200) dev sentences in 5 random batch compositions
  (shuffled, cut into batches of random sizes 1..32, seed 0..4): the largest difference of any
  probability of a sentence between compositions;
* SST-2 dev accuracy (872 sentences, batches of 32 sorted by length, or one per call for the
  dynamic model as it is served);
* throughput (sentences/s, median of ``--repeats`` interleaved passes): sorted batches of 32 over
  the first ``--n-speed`` dev sentences, and one sentence per call over the first ``--n-one``
  (today's serving of the dynamic model).

Usage::

    .venv-quantize/bin/python benchmarks/bench_fallback.py make --cache .cache
    PYTHONPATH=src python benchmarks/bench_fallback.py measure --cache .cache [--models ...]

Results: ``benchmarks/results/fallback_variants.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from confroute.integrations.io import load_texts

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONFROUTE_SHARED", ROOT / ".." / "shared"))


def _load(split: str) -> tuple[list[str], np.ndarray]:
    texts, labels = load_texts(SHARED / "data" / "sst2" / f"{split}.tsv")
    return list(texts), np.asarray(labels).astype(int)


def make(ns: argparse.Namespace) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from dequantize_int8 import dequantize

    from confroute.export import quantize_onnx

    wq = ns.cache / "mpnet-sst2-wq"
    if not (wq / "model.onnx").is_file():
        print(f"{wq}: {dequantize(SHARED / 'models' / 'mpnet-sst2-int8', wq)} MatMuls dequantised", flush=True)
    train, _ = _load("train")
    rng = random.Random(0)
    calib = rng.sample(train, ns.n_calib)
    dev, _ = _load("dev")
    report = {}
    for method in ns.methods:
        name = f"static-{method}" + (f"-{ns.suffix}" if ns.suffix else "")
        out = ns.cache / f"mpnet-sst2-{name}"
        t0 = time.perf_counter()
        r = quantize_onnx(wq, out, mode="static", calibration_texts=calib, calibration_method=method,
                          check_texts=dev[:100], overwrite=True, keep_float=ns.keep_float)
        report[name] = {"keep_float": ns.keep_float,
            "seconds": round(time.perf_counter() - t0, 1), "n_calibration": r.n_calibration,
            "vs_wq_max_prob_diff_100dev": r.max_prob_diff, "vs_wq_label_agreement_100dev": r.label_agreement,
            "max_batch_diff_100dev": r.max_batch_diff, "mib": r.int8_bytes / 2**20,
        }
        print(out, report[name], flush=True)
    res = ROOT / "benchmarks" / "results" / "fallback_make.json"
    old = json.loads(res.read_text()) if res.is_file() else {}
    old.update(report)
    res.write_text(json.dumps(old, indent=2) + "\n")


def _predictor(path: Path, threads: int, batch: int, sort: bool | None = None) -> Any:
    from confroute.predictors import ONNXRuntimePredictor

    return ONNXRuntimePredictor(path, num_threads=threads, batch_size=batch, sort_by_length=sort)


def _invariance(path: Path, texts: list[str], threads: int) -> float:
    """Largest |prob difference| of a sentence across 5 random batch compositions."""
    from confroute.export import batch_composition_diff

    return batch_composition_diff(_predictor(path, threads, 32, sort=False), texts, compositions=5, max_batch_size=32)


def measure(ns: argparse.Namespace) -> None:
    dev, labels = _load("dev")
    models = {m: (SHARED / "models" / "mpnet-sst2-int8" if m == "dynamic" else ns.cache / f"mpnet-sst2-{m}")
              for m in ns.models}
    out: dict[str, Any] = {"threads": ns.threads, "platform": platform.processor() or platform.machine(),
                           "load_before": os.getloadavg(), "models": {}}
    if "rowwise" in models and not (models["rowwise"] / "model.onnx").is_file():
        from confroute.export import rowwise_int8

        rowwise_int8(SHARED / "models" / "mpnet-sst2-int8", models["rowwise"], check_texts=dev[:100])
    for name, path in models.items():
        if ns.checks is not None and name not in ns.checks:
            continue
        inv = _invariance(path, dev[: ns.n_inv], ns.threads)
        sorted_p = _predictor(path, ns.threads, 32, sort=True)
        one_p = _predictor(path, ns.threads, 1, sort=False)
        acc_sorted = float(np.mean(np.argmax(sorted_p.predict(dev).probs, 1) == labels))
        entry = {"path": str(path), "invariance_max_prob_diff": inv, "dev_acc_sorted32": acc_sorted}
        if name == "dynamic":
            entry["dev_acc_one_per_call"] = float(np.mean(np.argmax(one_p.predict(dev).probs, 1) == labels))
        out["models"][name] = entry
        print(name, entry, flush=True)
    # Throughput: interleaved repeats (sorted batches of 32; one per call on a subset).
    # Wall-clock rates, and rates per CPU-second of this process (ONNX Runtime with 1 intra-op
    # thread computes in the calling thread, so process CPU time is the model's CPU time, much
    # less sensitive than wall time to other jobs on a shared machine).
    kinds = ("sorted32", "one_per_call", "sorted32_cpu", "one_per_call_cpu")
    rates: dict[str, dict[str, list[float]]] = {m: {k: [] for k in kinds} for m in models}
    preds = {m: (_predictor(p, ns.threads, 32, sort=True), _predictor(p, ns.threads, 1, sort=False))
             for m, p in models.items()}
    sub, speed = dev[: ns.n_one], dev[: ns.n_speed]
    for _ in range(ns.repeats):
        for m, (sp, op) in preds.items():
            t0, c0 = time.perf_counter(), time.process_time()
            sp.predict(speed)
            rates[m]["sorted32"].append(len(speed) / (time.perf_counter() - t0))
            rates[m]["sorted32_cpu"].append(len(speed) / (time.process_time() - c0))
            t0, c0 = time.perf_counter(), time.process_time()
            for s in sub:
                op.predict([s])
            rates[m]["one_per_call"].append(len(sub) / (time.perf_counter() - t0))
            rates[m]["one_per_call_cpu"].append(len(sub) / (time.process_time() - c0))
    for m in models:
        entry = out["models"].setdefault(m, {"path": str(models[m])})
        for k, v in rates[m].items():
            entry[f"sent_per_s_{k}"] = round(float(np.median(v)), 1)
            entry[f"sent_per_s_{k}_all"] = [round(x, 1) for x in v]
        print(m, {k: entry[k] for k in entry if k.startswith("sent_per_s")}, flush=True)
    out["load_after"] = os.getloadavg()
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(ns.out.read_text()) if ns.out.is_file() else {}
    old[ns.tag] = out
    ns.out.write_text(json.dumps(old, indent=2) + "\n")
    print(f"wrote {ns.out} [{ns.tag}]; load before {out['load_before']} after {out['load_after']}")


def measure_deepsparse(ns: argparse.Namespace) -> None:
    """The same checks on DeepSparse 1.8 (numpy<2 environment): one engine per model, batch 32,
    every input padded to 64 tokens, ``--threads`` cores; each model compiled from a copy
    (DeepSparse rewrites the .onnx it is given)."""
    import shutil

    from confroute.predictors import DeepSparsePredictor

    dev, labels = _load("dev")
    out: dict[str, Any] = {"threads": ns.threads, "backend": "deepsparse 1.8.0, batch 32, 64 tokens, no buckets",
                           "load_before": os.getloadavg(), "models": {}}
    for name in ns.models:
        src = SHARED / "models" / "mpnet-sst2-int8" if name == "dynamic" else ns.cache / f"mpnet-sst2-{name}"
        copy = ns.cache / "deepsparse-copies" / name
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(src, copy)
        t0 = time.perf_counter()
        try:
            p = DeepSparsePredictor(copy, num_cores=ns.threads, batch_size=32, sequence_length=64, buckets=None)
        except Exception as exc:  # noqa: BLE001 - report what DeepSparse says about the graph
            out["models"][name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(name, out["models"][name], flush=True)
            continue
        entry: dict[str, Any] = {"compile_s": round(time.perf_counter() - t0, 1)}
        from confroute.export import batch_composition_diff

        entry["invariance_max_prob_diff"] = batch_composition_diff(p, dev[: ns.n_inv], compositions=5, max_batch_size=32)
        entry["dev_acc_sorted32"] = float(np.mean(np.argmax(p.predict(dev).probs, 1) == labels))
        speed, rates = dev[: ns.n_speed], []
        for _ in range(ns.repeats):
            t0 = time.perf_counter()
            p.predict(speed)
            rates.append(len(speed) / (time.perf_counter() - t0))
        entry["sent_per_s_sorted32"] = round(float(np.median(rates)), 1)
        entry["sent_per_s_sorted32_all"] = [round(x, 1) for x in rates]
        out["models"][name] = entry
        print(name, entry, flush=True)
    out["load_after"] = os.getloadavg()
    old = json.loads(ns.out.read_text()) if ns.out.is_file() else {}
    old[ns.tag] = out
    ns.out.write_text(json.dumps(old, indent=2) + "\n")
    print(f"wrote {ns.out} [{ns.tag}]; load before {out['load_before']} after {out['load_after']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--cache", type=Path, default=ROOT / ".cache")
    m.add_argument("--n-calib", type=int, default=512)
    m.add_argument("--methods", nargs="+", default=["minmax"])
    m.add_argument("--keep-float", nargs="*", default=[], help="node-name patterns kept float32")
    m.add_argument("--suffix", default="", help="added to the variant's name")
    m.set_defaults(func=make)
    r = sub.add_parser("measure")
    r.add_argument("--cache", type=Path, default=ROOT / ".cache")
    r.add_argument("--models", nargs="+", default=["dynamic", "wq", "static-minmax"])
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--n-inv", type=int, default=200)
    r.add_argument("--n-one", type=int, default=200, help="dev sentences of the one-per-call passes")
    r.add_argument("--n-speed", type=int, default=872, help="dev sentences of the sorted passes")
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--tag", default="ort")
    r.add_argument("--checks", nargs="*", default=None, help="models to check for invariance and accuracy "
                   "(default: all of --models)")
    r.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fallback_variants.json")
    r.add_argument("--backend", choices=["onnxruntime", "deepsparse"], default="onnxruntime")
    r.set_defaults(func=lambda ns: (measure_deepsparse if ns.backend == "deepsparse" else measure)(ns))
    ns = p.parse_args()
    ns.func(ns)


if __name__ == "__main__":
    main()
