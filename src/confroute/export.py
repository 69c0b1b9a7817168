"""Export a Hugging Face sequence-classification model to ONNX for the ONNX backends.

The output directory is what :class:`~confroute.predictors.ONNXRuntimePredictor` and
:class:`~confroute.predictors.DeepSparsePredictor` read: ``model.onnx`` (opset 14, inputs
``input_ids``/``attention_mask``/``token_type_ids`` with dynamic batch and sequence axes,
output ``logits``) next to a copy of the tokenizer and ``config.json``. The export is checked:
ONNX Runtime and PyTorch are run on the same texts and the largest absolute logit difference
must stay within a tolerance.

Command line: ``python -m confroute.export MODEL_DIR OUTPUT_DIR``.
"""

from __future__ import annotations

import argparse
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["export_to_onnx", "ExportResult", "ExportMismatchError", "DEFAULT_CHECK_TEXTS"]

#: Texts the exported model is checked on: different lengths, so that padding is exercised.
DEFAULT_CHECK_TEXTS = (
    "a gorgeous, witty, seductive movie.",
    "the plot is nothing but boilerplate clichés from start to finish,",
    "it's a charming and often affecting journey.",
    "bad",
    "an utterly incompetent conclusion to a film that, until then, had been deeply "
    "absorbing and full of surprising, tender and funny moments",
)

#: Files copied next to ``model.onnx`` when present (tokenizer, config, provenance).
_SIDE_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "added_tokens.json",
    "training_info.json",
)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ExportMismatchError(RuntimeError):
    """The exported ONNX model does not reproduce the PyTorch logits within tolerance."""


@dataclass(frozen=True)
class ExportResult:
    """Where the model went and how closely ONNX Runtime reproduces PyTorch.

    Attributes
    ----------
    onnx_path : Path
    output_dir : Path
    input_names : tuple of str
    opset : int
    max_abs_diff : float
        Largest absolute difference between PyTorch and ONNX Runtime logits on the check texts.
    n_checked : int
        Number of texts compared.
    """

    onnx_path: Path
    output_dir: Path
    input_names: tuple[str, ...]
    opset: int
    max_abs_diff: float
    n_checked: int


def _import_export_deps() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise ImportError(
            "export_to_onnx needs torch and transformers: pip install 'confroute[export]'"
        ) from None
    return torch, transformers


def export_to_onnx(
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    opset: int = 14,
    atol: float = 1e-4,
    check_texts: Sequence[str] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export ``model_dir`` (a saved ``AutoModelForSequenceClassification``) to ONNX and check it.

    Parameters
    ----------
    model_dir : path
        Directory written by ``save_pretrained`` (config, weights, tokenizer). Only read.
    output_dir : path
        Where ``model.onnx``, the tokenizer files and ``config.json`` go. Created if needed;
        must not be ``model_dir``.
    opset : int, default 14
        ONNX opset (14 is what DeepSparse 1.8 and the study's models use).
    atol : float, default 1e-4
        Largest allowed absolute difference between PyTorch and ONNX Runtime logits.
    check_texts : sequence of str, optional
        Texts for the check (default :data:`DEFAULT_CHECK_TEXTS`); run one at a time and as one
        padded batch.
    overwrite : bool, default False
        Replace an existing ``output_dir/model.onnx``.

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportMismatchError
        When the difference exceeds ``atol`` (the file is left in place for inspection).

    Examples
    --------
    >>> r = export_to_onnx("models/minilm-sst2-dense", "~/.cache/confroute/minilm-dense")  # doctest: +SKIP
    >>> r.max_abs_diff < 1e-4  # doctest: +SKIP
    True
    """
    torch, transformers = _import_export_deps()
    src = Path(model_dir).expanduser().resolve()
    dst = Path(output_dir).expanduser().resolve()
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} is not a saved Hugging Face model directory (no config.json)")
    if dst == src:
        raise ValueError("output_dir must differ from model_dir: the model directory is never written to")
    onnx_path = dst / "model.onnx"
    if onnx_path.exists() and not overwrite:
        raise FileExistsError(f"{onnx_path} exists; pass overwrite=True to replace it")
    dst.mkdir(parents=True, exist_ok=True)

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    # Eager attention exports to plain ONNX ops every runtime supports; fp16-stored weights are
    # upcast so that the CPU runtimes compute in float32.
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(src), local_files_only=True, attn_implementation="eager"
    ).float().eval()
    accepted = _forward_arguments(model)
    input_names = tuple(name for name in _INPUTS if name in accepted)

    class _Logits(torch.nn.Module):
        # A fixed positional signature and a bare tensor output give a clean traced graph.
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(input_names, args))).logits

    sample = tokenizer(["a short example", "and a somewhat longer second example"], padding=True,
                       return_tensors="pt")
    args = tuple(sample[name] if name in sample else torch.zeros_like(sample["input_ids"])
                 for name in input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes["logits"] = {0: "batch"}
    # Eval mode on the wrapper too: export restores the wrapper's mode afterwards, and a fresh
    # Module is in training mode, which would switch dropout on in the check below.
    wrapper = _Logits(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # dynamo=False is deliberate (the TorchScript exporter gives the opset-14 graphs the ONNX
        # backends need); its deprecation notice is not actionable for users.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            wrapper,
            args,
            str(onnx_path),
            input_names=list(input_names),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    for name in _SIDE_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)

    texts = list(check_texts if check_texts is not None else DEFAULT_CHECK_TEXTS)
    diff = _compare(model.eval(), tokenizer, onnx_path, input_names, texts, torch)
    result = ExportResult(onnx_path, dst, input_names, opset, diff, len(texts))
    if not np.isfinite(diff) or diff > atol:
        raise ExportMismatchError(
            f"ONNX Runtime logits differ from PyTorch by up to {diff:.3g} (> atol={atol:g}) on "
            f"{len(texts)} texts; the export is at {onnx_path}"
        )
    return result


def _forward_arguments(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def _compare(
    model: Any, tokenizer: Any, onnx_path: Path, input_names: Sequence[str], texts: list[str], torch: Any
) -> float:
    """Max |logit difference| between PyTorch and ONNX Runtime, per text and as a padded batch."""
    if not texts:
        raise ValueError("check_texts must hold at least one text")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("checking the export needs onnxruntime: pip install 'confroute[onnx]'") from None
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    batches = [[t] for t in texts] + [texts]
    worst = 0.0
    for batch in batches:
        enc = tokenizer(batch, padding=True, truncation=True, return_tensors="np")
        feed = {
            name: np.asarray(enc[name] if name in enc else np.zeros_like(enc["input_ids"]), dtype=np.int64)
            for name in input_names
        }
        with torch.no_grad():
            ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
        (got,) = session.run(["logits"], feed)
        worst = max(worst, float(np.max(np.abs(ref - got))))
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m confroute.export", description="Export a HF text classifier to ONNX and check it."
    )
    parser.add_argument("model_dir")
    parser.add_argument("output_dir")
    parser.add_argument("--opset", type=int, default=14)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--overwrite", action="store_true")
    ns = parser.parse_args(argv)
    r = export_to_onnx(ns.model_dir, ns.output_dir, opset=ns.opset, atol=ns.atol, overwrite=ns.overwrite)
    print(f"wrote {r.onnx_path} (opset {r.opset}, inputs {list(r.input_names)}); "
          f"max |logit diff| vs PyTorch on {r.n_checked} texts: {r.max_abs_diff:.2e}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
