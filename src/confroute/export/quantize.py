"""int8 quantisation of an exported ONNX text classifier: dynamic (``quantize_dynamic``) or static.

Part of :mod:`confroute.export` (which re-exports its public names).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ExportMismatchError
from .common import DEFAULT_CHECK_TEXTS, copy_side_files, copy_target

__all__ = ["QUANTIZE_MODES", "QuantizeResult", "quantize_onnx", "check_quantize_mode", "import_quantization"]


# --------------------------------------------------------------------------- int8 quantisation
#: Values of ``quantize=`` (and of ``confroute export --quantize``).
QUANTIZE_MODES = ("int8",)


def check_quantize_mode(mode: Any) -> None:
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be None or one of {list(QUANTIZE_MODES)}, got {mode!r}")


def import_quantization() -> Any:
    """``onnxruntime.quantization``, or an ImportError that names the extra to install."""
    hint = (
        "int8 quantisation uses ONNX Runtime's quantisation tools, which need onnxruntime, "
        "onnx>=1.16 and ml_dtypes (and so numpy 2: they cannot share an environment with the "
        "deepsparse extra): pip install 'confroute[quantize]'"
    )
    try:
        from importlib.metadata import PackageNotFoundError, version

        onnx_version = version("onnx")
    except PackageNotFoundError:
        raise ImportError(f"{hint} (onnx is not installed)") from None
    from ..predictors.deepsparse import version_tuple

    if version_tuple(onnx_version) < (1, 16):
        raise ImportError(f"{hint} (found onnx {onnx_version})")
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise ImportError(f"{hint} ({exc})") from None
    return quantization


@dataclass(frozen=True)
class QuantizeResult:
    """An int8 copy of an ONNX text classifier and how closely it follows the float32 model.

    Attributes
    ----------
    onnx_path : Path
        The quantised ``model.onnx``.
    output_dir : Path
    mode : str
        ``"int8"``: dynamic quantisation (int8 weights; activations quantised at run time).
    max_prob_diff : float
        Largest absolute difference of any class probability between the int8 and the float32
        model on the check texts (run one at a time and in padded batches of 32).
    label_agreement : float
        Share of check texts (one at a time) on which both models predict the same class.
    n_checked : int
    fp32_bytes, int8_bytes : int
        Size of the float32 and int8 ``model.onnx``.
    """

    onnx_path: Path
    output_dir: Path
    mode: str
    max_prob_diff: float
    label_agreement: float
    n_checked: int
    fp32_bytes: int
    int8_bytes: int


def quantize_onnx(
    model: str | Path,
    output_dir: str | Path,
    *,
    mode: str = "int8",
    per_channel: bool = True,
    reduce_range: bool = True,
    check_texts: Sequence[str] | None = None,
    overwrite: bool = False,
) -> QuantizeResult:
    """Write a dynamically quantised (int8) copy of an ONNX text classifier, and compare it.

    ONNX Runtime's ``quantize_dynamic`` stores the weights of the matrix multiplications as int8
    and quantises their activations at run time, per batch; on a CPU this runs two to three
    times faster than float32. The copy goes to ``output_dir`` with the tokenizer and config
    files; both models are then run on ``check_texts`` and the result reports the largest
    probability difference and the label agreement. The source is only read.

    Parameters
    ----------
    model : path
        A directory holding a float32 ``model.onnx`` (with its tokenizer), or the ``.onnx`` file.
    output_dir : path
        Where the copy goes; must differ from the model's directory.
    mode : {"int8"}
    per_channel : bool, default True
        One weight scale per output channel instead of one per tensor (per tensor cost MPNet
        about 1.5 points of SST-2 accuracy; see ``shared/models/mpnet-sst2-int8``).
    reduce_range : bool, default True
        7-bit weights, which avoids overflow in the int8 kernels of CPUs without VNNI.
    check_texts : sequence of str, optional
        Texts both models are run on (default :data:`DEFAULT_CHECK_TEXTS`). Pass a validation
        set to measure agreement where it matters.
    overwrite : bool, default False
        Replace an existing ``output_dir/model.onnx``.

    Returns
    -------
    QuantizeResult

    Raises
    ------
    ImportError
        When ``onnxruntime.quantization`` cannot run here (names ``confroute[quantize]``).

    Examples
    --------
    >>> r = quantize_onnx("models/minilm-sst2-pruned80", "/tmp/pruned80-int8")  # doctest: +SKIP
    >>> r.label_agreement, r.int8_bytes < r.fp32_bytes  # doctest: +SKIP
    (1.0, True)
    """
    check_quantize_mode(mode)
    quantization = import_quantization()
    from ..predictors._text import TextEncoder, default_max_length

    src_file, src_dir, dst, out_file = copy_target(model, output_dir, overwrite)
    texts = list(check_texts if check_texts is not None else DEFAULT_CHECK_TEXTS)
    if not texts:
        raise ValueError("check_texts must hold at least one text")
    dst.mkdir(parents=True, exist_ok=True)
    import logging

    def not_preprocessing(record: logging.LogRecord) -> bool:
        # quantize_dynamic logs advice to run its pre-processing step on every call; shape
        # inference adds nothing for these dynamic-shape transformer graphs, so drop the advice.
        return "pre-processing" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(not_preprocessing)
    try:
        quantization.quantize_dynamic(
            str(src_file),
            str(out_file),
            weight_type=quantization.QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            # Graphs fused by ONNX Runtime's transformer optimizer hold com.microsoft ops that
            # shape inference cannot type; their MatMul outputs are float32 (1 = FLOAT).
            extra_options={"DefaultTensorType": 1},
        )
    finally:
        root.removeFilter(not_preprocessing)
    copy_side_files(src_dir, dst)

    import onnxruntime as ort

    encoder = TextEncoder(src_dir, max_length=default_max_length(src_dir), source=str(src_file))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(str(f), options, providers=["CPUExecutionProvider"])
                for f in (src_file, out_file)]
    from ..core.types import softmax

    def both(batch: list[str]) -> tuple[np.ndarray, np.ndarray]:
        arrays = encoder.encode(batch).arrays
        fp32, int8 = (
            softmax(np.asarray(s.run(None, {i.name: arrays[i.name] for i in s.get_inputs()})[0], dtype=np.float64))
            for s in sessions
        )
        return fp32, int8

    # One text at a time (as a user sees each label), then in padded batches of 32.
    worst, agree = 0.0, 0
    for text in texts:
        fp32, int8 = both([text])
        worst = max(worst, float(np.max(np.abs(fp32 - int8))))
        agree += int(fp32.argmax(1)[0] == int8.argmax(1)[0])
    for i in range(0, len(texts), 32):
        fp32, int8 = both(texts[i : i + 32])
        worst = max(worst, float(np.max(np.abs(fp32 - int8))))
    n = len(texts)
    if not np.isfinite(worst):
        raise ExportMismatchError(f"the int8 model at {out_file} gives non-finite outputs")
    return QuantizeResult(
        out_file, dst, mode, worst, agree / n, n, src_file.stat().st_size, out_file.stat().st_size
    )


