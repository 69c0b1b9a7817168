"""Make the int8 MiniLM models the benchmarks and the SST-2 study use, with confroute's own export.

* ``minilm-sst2-dense-int8``: ``export_to_onnx(minilm-sst2-dense, ..., quantize="int8")``
  (PyTorch -> ONNX float32, checked against PyTorch, then dynamic int8),
* ``minilm-sst2-pruned80-int8``: ``quantize_onnx(minilm-sst2-pruned80, ...)``,
* ``minilm-sst2-pruned80-rowwise``: ``quantize_onnx(minilm-sst2-pruned80, ..., mode="rowwise")``
  (dynamic int8, then every activation row on its own scale: batch-invariant, so a server may
  batch it; the first stage of ``benchmarks/bench_serve.py --engine local``),

both checked against their float32 model on the 872 SST-2 dev sentences (largest probability
difference, label agreement). They go to ``--cache`` (default ``~/.cache/confroute``), never into
the repository or the shared folder; the agreement report goes to
``benchmarks/results/int8_export.json``.

ONNX Runtime's quantisation tools need onnx>=1.16 and numpy 2, so this runs in the quantize
environment, not the DeepSparse one: ``bash tools/run.sh int8`` sets it up and runs this script.
The int8 models it writes run in any environment with onnxruntime.

Usage::

    python benchmarks/make_int8.py [--shared ../shared] [--cache DIR] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from confroute.integrations.io import load_texts
from confroute.export import export_to_onnx, quantize_onnx

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("CONFROUTE_SHARED", ROOT / ".." / "shared")))
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/confroute").expanduser())
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_export.json")
    ns = parser.parse_args()
    try:  # one thread for the PyTorch side of the export check, as for every model here
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    shared = ns.shared.resolve()
    texts, _ = load_texts(shared / "data" / "sst2" / "dev.tsv")
    texts = list(texts)
    report = {}
    dense_out = ns.cache / "minilm-sst2-dense-int8"
    if ns.overwrite or not (dense_out / "model.onnx").is_file():
        r = export_to_onnx(shared / "models" / "minilm-sst2-dense", dense_out, quantize="int8",
                           check_texts=texts, overwrite=ns.overwrite)
        q = r.quantization
        assert q is not None
        report["minilm-sst2-dense-int8"] = {
            "how": "export_to_onnx(minilm-sst2-dense, quantize='int8')",
            "fp32_vs_pytorch_max_abs_logit_diff": r.max_abs_diff,
            "vs_fp32_max_prob_diff": q.max_prob_diff, "vs_fp32_label_agreement": q.label_agreement,
            "n_checked": q.n_checked, "fp32_mib": q.fp32_bytes / 2**20, "int8_mib": q.int8_bytes / 2**20,
        }
        print(f"{dense_out}: {report['minilm-sst2-dense-int8']}", flush=True)
    pruned_out = ns.cache / "minilm-sst2-pruned80-int8"
    if ns.overwrite or not (pruned_out / "model.onnx").is_file():
        q = quantize_onnx(shared / "models" / "minilm-sst2-pruned80", pruned_out, check_texts=texts,
                          overwrite=ns.overwrite)
        report["minilm-sst2-pruned80-int8"] = {
            "how": "quantize_onnx(minilm-sst2-pruned80)",
            "vs_fp32_max_prob_diff": q.max_prob_diff, "vs_fp32_label_agreement": q.label_agreement,
            "n_checked": q.n_checked, "fp32_mib": q.fp32_bytes / 2**20, "int8_mib": q.int8_bytes / 2**20,
        }
        print(f"{pruned_out}: {report['minilm-sst2-pruned80-int8']}", flush=True)
    rowwise_out = ns.cache / "minilm-sst2-pruned80-rowwise"
    if ns.overwrite or not (rowwise_out / "model.onnx").is_file():
        q = quantize_onnx(shared / "models" / "minilm-sst2-pruned80", rowwise_out, mode="rowwise", check_texts=texts,
                          overwrite=ns.overwrite)
        report["minilm-sst2-pruned80-rowwise"] = {
            "how": "quantize_onnx(minilm-sst2-pruned80, mode='rowwise')",
            "vs_fp32_max_prob_diff": q.max_prob_diff, "vs_fp32_label_agreement": q.label_agreement,
            "max_batch_diff": q.max_batch_diff, "n_checked": q.n_checked, "int8_mib": q.int8_bytes / 2**20,
        }
        print(f"{rowwise_out}: {report['minilm-sst2-pruned80-rowwise']}", flush=True)
    if report:
        old = json.loads(ns.out.read_text()) if ns.out.is_file() else {}
        old.update(report)
        ns.out.parent.mkdir(parents=True, exist_ok=True)
        ns.out.write_text(json.dumps(old, indent=2) + "\n")
        print(f"wrote {ns.out}")
    else:
        print(f"int8 models already in {ns.cache} (pass --overwrite to rebuild)")


if __name__ == "__main__":
    main()
