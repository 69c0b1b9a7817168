"""``confroute export``: a Hugging Face text classifier to ONNX, checked against PyTorch.

The command line of :func:`confroute.export.export_to_onnx` (and its ``quantize="int8"``,
``"rowwise"`` and ``"static"`` options); it was ``python -m confroute.predictors.export`` before 0.3.

``--quantize rowwise`` on a MODEL_DIR that already holds a dynamically quantised ``model.onnx``
(``--quantize int8``'s output, e.g. ``shared/models/mpnet-sst2-int8``) rewrites that model
(:func:`confroute.export.rowwise_int8`): no PyTorch, no quantisation tools.

``--quantize static --calibration FILE`` calibrates the int8 activation scales on the texts of FILE
(one per line, or the text column of a .tsv/.csv/.jsonl/.parquet file read by
:func:`confroute.integrations.io.load_texts`); ``--calibration-size`` of them, drawn at random
(seed 0), are used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..exceptions import CLIError

__all__ = ["add_export_parser", "add_export_arguments", "run_export", "calibration_texts"]


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``confroute export``."""
    p.add_argument("model_dir", metavar="MODEL_DIR",
                   help="a saved AutoModelForSequenceClassification (with its tokenizer); with --quantize rowwise, "
                   "also a directory holding a dynamically quantised model.onnx")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where model.onnx, the tokenizer and config.json go")
    p.add_argument("--opset", type=int, default=14, help="ONNX opset (default 14)")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest absolute logit difference to PyTorch allowed on the check texts (default 1e-4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT_DIR/model.onnx")
    from ..export import QUANTIZE_MODES

    from ..export import CALIBRATION_METHODS

    p.add_argument("--quantize", choices=list(QUANTIZE_MODES), default=None,
                   help="int8: dynamic quantisation (outputs depend on batch composition); rowwise: dynamic, "
                   "each activation row on its own scale (batch-invariant); static: int8 with activation scales "
                   "calibrated on --calibration texts (batch-invariant). Needs 'confroute[quantize]' (rowwise from "
                   "an int8 model.onnx: only onnx)")
    p.add_argument("--calibration", type=Path, default=None, metavar="FILE",
                   help="--quantize static: calibration texts (training data), one per line or a .tsv/.csv/.jsonl "
                   "file with a text column")
    p.add_argument("--calibration-size", type=int, default=512, metavar="N",
                   help="calibration texts drawn at random (seed 0) from FILE (default 512; all if fewer)")
    p.add_argument("--calibration-method", choices=list(CALIBRATION_METHODS), default="minmax",
                   help="how the activation ranges are taken (default minmax)")
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
    try:
        return _run(ns)
    except CLIError as exc:
        print(f"confroute export: error: {exc}", file=sys.stderr)
        return 2


def _run(ns: argparse.Namespace) -> int:
    from ..export import export_to_onnx

    texts = None
    if ns.check_texts is not None:
        texts = [line for line in ns.check_texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    calibration = None
    if ns.quantize == "static":
        if ns.calibration is None:
            raise CLIError("--quantize static needs --calibration FILE (training texts that fix the int8 scales)")
        calibration = calibration_texts(ns.calibration, ns.calibration_size)
    elif ns.calibration is not None:
        raise CLIError("--calibration is for --quantize static only")
    if ns.quantize == "rowwise" and _is_onnx(Path(ns.model_dir)):
        return _rowwise(ns, texts)
    r = export_to_onnx(ns.model_dir, ns.output_dir, opset=ns.opset, atol=ns.atol, overwrite=ns.overwrite,
                       check_texts=texts, quantize=ns.quantize, calibration_texts=calibration,
                       calibration_method=ns.calibration_method)
    print(f"wrote {r.onnx_path} (opset {r.opset}, inputs {list(r.input_names)}); "
          f"max |logit diff| vs PyTorch on {r.n_checked} texts: {r.max_abs_diff:.2e}")
    q = r.quantization
    if q is not None:
        print(f"{q.mode}: {q.int8_bytes / 2**20:.1f} MiB (float32 {q.fp32_bytes / 2**20:.1f} MiB); vs float32 "
              f"on {q.n_checked} texts: max |prob diff| {q.max_prob_diff:.2e}, "
              f"label agreement {q.label_agreement:.4f}")
        print(f"{q.mode}: max |prob diff| of a text alone vs in a batch of 32: {q.max_batch_diff:.2e}"
              + (f"; calibrated on {q.n_calibration} texts" if q.n_calibration else ""))
    return 0


def _is_onnx(model_dir: Path) -> bool:
    return model_dir.suffix == ".onnx" or (model_dir / "model.onnx").is_file()


def _rowwise(ns: argparse.Namespace, texts: list[str] | None) -> int:
    from ..export import rowwise_int8

    try:
        q = rowwise_int8(ns.model_dir, ns.output_dir, check_texts=texts, overwrite=ns.overwrite)
    except (ValueError, FileExistsError) as exc:
        raise CLIError(f"{ns.model_dir}: {exc}") from None
    print(f"wrote {q.onnx_path} (row-wise int8, {q.int8_bytes / 2**20:.1f} MiB); vs {q.reference} on "
          f"{q.n_checked} texts: max |prob diff| {q.max_prob_diff:.2e}, label agreement {q.label_agreement:.4f}")
    print(f"rowwise: max |prob diff| of a text alone vs in a batch of 32: {q.max_batch_diff:.2e}")
    return 0


def calibration_texts(path: Path, size: int) -> list[str]:
    """Up to ``size`` texts of ``path`` drawn at random (seed 0), in file order.

    A ``.txt`` file (or any unknown suffix) holds one text per line; table files are read with
    :func:`confroute.integrations.io.load_texts` (no label column needed).
    """
    if size < 1:
        raise CLIError(f"--calibration-size must be >= 1, got {size}")
    if not path.is_file():
        raise CLIError(f"--calibration: no file {path}")
    if path.suffix.lower() in (".tsv", ".csv", ".jsonl", ".json", ".parquet"):
        from ..integrations.io import load_texts

        texts = [str(t) for t in load_texts(path, label_column=None).texts]
    else:
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise CLIError(f"--calibration: {path} holds no texts")
    if len(texts) > size:
        import random

        keep = sorted(random.Random(0).sample(range(len(texts)), size))
        texts = [texts[i] for i in keep]
    return texts
