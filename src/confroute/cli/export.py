"""``confroute export``: a Hugging Face text classifier to ONNX, checked against PyTorch.

The command line of :func:`confroute.export.export_to_onnx` (and its ``quantize="int8"``
option); it was ``python -m confroute.predictors.export`` before 0.3.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_export_parser", "add_export_arguments", "run_export"]


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``confroute export``."""
    p.add_argument("model_dir", metavar="MODEL_DIR",
                   help="a saved AutoModelForSequenceClassification (with its tokenizer)")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where model.onnx, the tokenizer and config.json go")
    p.add_argument("--opset", type=int, default=14, help="ONNX opset (default 14)")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest absolute logit difference to PyTorch allowed on the check texts (default 1e-4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT_DIR/model.onnx")
    from ..export import QUANTIZE_MODES

    p.add_argument("--quantize", choices=list(QUANTIZE_MODES), default=None,
                   help="write a dynamically quantised model (needs 'confroute[quantize]')")
    p.add_argument("--check-texts", type=Path, default=None, metavar="FILE",
                   help="texts to check the export on, one per line (default: five built-in ones)")


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``export`` on the top-level subparsers."""
    p = sub.add_parser(
        "export",
        help="export a Hugging Face text classifier to ONNX and check it against PyTorch",
        description="Export MODEL_DIR (a saved AutoModelForSequenceClassification) to OUTPUT_DIR/model.onnx "
        "(opset 14, dynamic batch and sequence axes) with its tokenizer and config.json, for the onnx: and "
        "deepsparse: backends; check ONNX Runtime against PyTorch on a few texts. Needs 'confroute[export]'.",
    )
    add_export_arguments(p)
    p.set_defaults(func=run_export)
    return p


def run_export(ns: argparse.Namespace) -> int:
    """Entry point of ``confroute export``; returns the exit status."""
    from ..export import export_to_onnx

    texts = None
    if ns.check_texts is not None:
        texts = [line for line in ns.check_texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    r = export_to_onnx(ns.model_dir, ns.output_dir, opset=ns.opset, atol=ns.atol, overwrite=ns.overwrite,
                       check_texts=texts, quantize=ns.quantize)
    print(f"wrote {r.onnx_path} (opset {r.opset}, inputs {list(r.input_names)}); "
          f"max |logit diff| vs PyTorch on {r.n_checked} texts: {r.max_abs_diff:.2e}")
    q = r.quantization
    if q is not None:
        print(f"{q.mode}: {q.int8_bytes / 2**20:.1f} MiB (float32 {q.fp32_bytes / 2**20:.1f} MiB); vs float32 "
              f"on {q.n_checked} texts: max |prob diff| {q.max_prob_diff:.2e}, "
              f"label agreement {q.label_agreement:.4f}")
    return 0
