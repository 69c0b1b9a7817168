"""int8 quantisation of an exported ONNX text classifier: dynamic, row-wise or static (calibrated).

* ``"int8"`` (dynamic, ONNX Runtime's ``quantize_dynamic``): int8 weights; each activation is
  quantised at run time with a scale computed from the whole batch tensor, so a text's output
  depends on which texts share its batch.
* ``"static"`` (ONNX Runtime's ``quantize_static``, QDQ format): int8 weights and activation
  scales fixed once from calibration texts, so every row is computed on its own: outputs do not
  depend on batch composition (to float rounding), and such a model can be batched and sorted by
  length freely.
* ``"rowwise"``: dynamic quantisation, then every activation row quantised with its own scale
  (:func:`confroute.export.rowwise.rowwise_int8_graph`): batch-invariant like ``"static"``, with
  no calibration data, at close to dynamic int8's speed (ONNX Runtime only).

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

__all__ = ["QUANTIZE_MODES", "CALIBRATION_METHODS", "QuantizeResult", "quantize_onnx", "check_quantize_mode",
           "import_quantization", "weight_matmuls", "compare_int8", "rowwise_int8",
           "batch_composition_diff"]


# --------------------------------------------------------------------------- int8 quantisation
#: Values of ``quantize=`` (and of ``confroute export --quantize``).
QUANTIZE_MODES = ("int8", "rowwise", "static")

#: Values of ``calibration_method=`` (ONNX Runtime's ``CalibrationMethod`` names, lower case).
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


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
        ``"int8"``: dynamic quantisation (int8 weights; activations quantised at run time, per
        batch). ``"static"``: int8 weights and activation scales fixed from calibration texts.
    max_prob_diff : float
        Largest absolute difference of any class probability between the int8 and the float32
        model on the check texts (run one at a time and in padded batches of 32).
    label_agreement : float
        Share of check texts (one at a time) on which both models predict the same class.
    n_checked : int
    fp32_bytes, int8_bytes : int
        Size of the float32 and int8 ``model.onnx``.
    max_batch_diff : float
        Largest absolute difference of any class probability of the int8 model between a text
        run alone and the same text in a padded batch of 32 (batch invariance: float rounding
        for ``"static"``, up to about 0.1 for ``"int8"``).
    n_calibration : int
        Calibration texts used (0 for dynamic quantisation).
    reference : str
        What ``max_prob_diff`` and ``label_agreement`` compare the copy with: ``"float32"`` (the
        source model, batched like the copy), or ``"dynamic int8, one text per call"`` for
        :func:`~confroute.export.rowwise_int8` (whose source is int8: ``fp32_bytes`` is then the
        source's size).
    """

    onnx_path: Path
    output_dir: Path
    mode: str
    max_prob_diff: float
    label_agreement: float
    n_checked: int
    fp32_bytes: int
    int8_bytes: int
    max_batch_diff: float = float("nan")
    n_calibration: int = 0
    reference: str = "float32"


def weight_matmuls(model: Any) -> list[str]:
    """Names of the ``MatMul``/``Gemm`` nodes of ``model`` (an ``onnx.ModelProto``) whose second
    input is a constant weight: the layers static quantisation makes int8.

    The attention products (query x key, probabilities x value) multiply two activations; they
    stay float32, as in dynamic quantisation.
    """
    graph = model.graph
    consts = {i.name for i in graph.initializer}
    consts |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
            and n.input[1] in consts]


def quantize_onnx(
    model: str | Path,
    output_dir: str | Path,
    *,
    mode: str = "int8",
    per_channel: bool = True,
    reduce_range: bool = True,
    check_texts: Sequence[str] | None = None,
    overwrite: bool = False,
    calibration_texts: Sequence[str] | None = None,
    calibration_method: str = "minmax",
    calibration_batch_size: int = 16,
    keep_float: Sequence[str] = (),
) -> QuantizeResult:
    """Write an int8 copy of an ONNX text classifier (dynamic or static), and compare it.

    ``mode="int8"``: ONNX Runtime's ``quantize_dynamic`` stores the weights of the matrix
    multiplications as int8 and quantises their activations at run time, per batch; on a CPU
    this runs two to three times faster than float32, but a text's output depends on the texts
    sharing its batch. ``mode="static"``: ``quantize_static`` (QDQ format) on the same weight
    matrix multiplications (:func:`weight_matmuls`), with activation scales computed once from
    ``calibration_texts`` (a few hundred texts from the training set); every row is then computed
    on its own, so outputs do not depend on batch composition. The copy goes to ``output_dir``
    with the tokenizer and config files; both models are then run on ``check_texts`` and the
    result reports the largest probability difference, the label agreement and the batch
    invariance of the copy. The source is only read.

    Parameters
    ----------
    model : path
        A directory holding a float32 ``model.onnx`` (with its tokenizer), or the ``.onnx`` file.
    output_dir : path
        Where the copy goes; must differ from the model's directory.
    mode : {"int8", "rowwise", "static"}
        ``"rowwise"`` is ``"int8"`` followed by :func:`~confroute.export.rowwise_int8_graph`.
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
    calibration_texts : sequence of str, optional
        ``mode="static"`` only, and required there: texts whose activations fix the scales
        (not the check texts: use training data).
    calibration_method : {"minmax", "percentile", "entropy"}, default "minmax"
        How a range is taken from the calibration activations.
    calibration_batch_size : int, default 16
        Texts per calibration run (padded to the longest; sorted by length).
    keep_float : sequence of str, default ()
        ``mode="static"``: regular expressions; a weight MatMul whose node name matches one
        (``re.search``) stays float32 (mixed precision, for the layers whose activations do not
        fit one fixed int8 scale).

    Returns
    -------
    QuantizeResult

    Raises
    ------
    ImportError
        When ``onnxruntime.quantization`` cannot run here (names ``confroute[quantize]``).
    ValueError
        On an unknown mode or method, or ``mode="static"`` without calibration texts.

    Examples
    --------
    >>> r = quantize_onnx("models/minilm-sst2-pruned80", "/tmp/pruned80-int8")  # doctest: +SKIP
    >>> r.label_agreement, r.int8_bytes < r.fp32_bytes  # doctest: +SKIP
    (1.0, True)
    >>> s = quantize_onnx("minilm-fp32", "/tmp/minilm-static", mode="static",
    ...                   calibration_texts=train_texts[:512])  # doctest: +SKIP
    >>> s.max_batch_diff < 1e-5  # doctest: +SKIP
    True
    """
    check_quantize_mode(mode)
    calibration = _check_calibration(mode, calibration_texts, calibration_method, calibration_batch_size)
    quantization = import_quantization()
    from ..predictors._text import TextEncoder, default_max_length

    src_file, src_dir, dst, out_file = copy_target(model, output_dir, overwrite)
    texts = list(check_texts if check_texts is not None else DEFAULT_CHECK_TEXTS)
    if not texts:
        raise ValueError("check_texts must hold at least one text")
    dst.mkdir(parents=True, exist_ok=True)
    encoder = TextEncoder(src_dir, max_length=default_max_length(src_dir), source=str(src_file))
    import logging

    def not_preprocessing(record: logging.LogRecord) -> bool:
        # quantize_dynamic/static log advice to run their pre-processing step on every call; shape
        # inference adds nothing for these dynamic-shape transformer graphs, so drop the advice.
        return "pre-processing" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(not_preprocessing)
    try:
        if mode == "static":
            _quantize_static(quantization, src_file, out_file, encoder, calibration, calibration_method,
                             calibration_batch_size, per_channel, reduce_range, tuple(keep_float))
        else:
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
            if mode == "rowwise":
                from .rowwise import import_onnx, rowwise_int8_graph

                onnx = import_onnx()
                onnx.save(rowwise_int8_graph(onnx.load(str(out_file)))[0], str(out_file))
    finally:
        root.removeFilter(not_preprocessing)
    copy_side_files(src_dir, dst)
    worst, agree, batch_diff = compare_int8(encoder, src_file, out_file, texts)
    n = len(texts)
    if not np.isfinite(worst):
        raise ExportMismatchError(f"the int8 model at {out_file} gives non-finite outputs")
    return QuantizeResult(out_file, dst, mode, worst, agree / n, n, src_file.stat().st_size,
                          out_file.stat().st_size, batch_diff, len(calibration))


def _check_calibration(mode: str, texts: Sequence[str] | None, method: str, batch_size: int) -> list[str]:
    """The calibration texts as a list, after checking the static-quantisation arguments."""
    if mode != "static":
        if texts is not None:
            raise ValueError("calibration_texts is for mode='static' only (dynamic quantisation needs none)")
        return []
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration_method must be one of {list(CALIBRATION_METHODS)}, got {method!r}")
    if batch_size < 1:
        raise ValueError(f"calibration_batch_size must be >= 1, got {batch_size}")
    if texts is None or isinstance(texts, str) or len(texts) == 0:
        raise ValueError("mode='static' needs calibration_texts: a few hundred texts from the training data, "
                         "whose activations fix the int8 scales")
    from ..predictors._text import check_texts as checked

    return checked(texts, "calibration_texts")


def _quantize_static(quantization: Any, src_file: Path, out_file: Path, encoder: Any, texts: list[str],
                     method: str, batch_size: int, per_channel: bool, reduce_range: bool,
                     keep_float: tuple[str, ...]) -> None:
    """``quantize_static`` (QDQ) of the weight MatMuls of ``src_file``, calibrated on ``texts``."""
    import re

    import onnx

    from ..predictors._text import length_order

    proto = onnx.load(str(src_file))
    names = [n for n in weight_matmuls(proto) if not any(re.search(p, n) for p in keep_float)]
    if not names:
        raise ValueError(f"{src_file} has no MatMul/Gemm with a constant weight to quantise")
    input_names = [i.name for i in proto.graph.input]
    del proto
    tokens = encoder.tokenize(texts)
    order = length_order(tokens.lengths)
    feeds = []
    for i in range(0, len(order), batch_size):
        arrays = encoder.pad(tokens.take(order[i : i + batch_size])).arrays
        feeds.append({k: np.asarray(arrays[k], dtype=np.int64) for k in input_names if k in arrays})

    class _Reader(quantization.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    methods = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
    quantization.quantize_static(
        str(src_file),
        str(out_file),
        _Reader(),
        quant_format=quantization.QuantFormat.QDQ,
        op_types_to_quantize=["MatMul", "Gemm"],
        nodes_to_quantize=names,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        calibrate_method=getattr(quantization.CalibrationMethod, methods[method]),
        # Only the MatMul inputs are quantised, as in dynamic quantisation: an int8 output would
        # take one scale for outliers of a few hundred (MPNet's FFN outputs) and lose the rest.
        # (Not CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the collected batches with it.)
        extra_options={"DefaultTensorType": 1, "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]},
    )


def compare_int8(encoder: Any, src_file: Path, out_file: Path, texts: list[str], *,
                 reference_batched: bool = True) -> tuple[float, int, float]:
    """(largest |prob diff| of the copy vs its source, label agreements one at a time, largest
    |prob diff| of the copy between one text alone and in a padded batch of 32).

    The copy is always run one text at a time and in batches of 32; the source likewise when
    ``reference_batched``, else one text at a time only (a dynamically quantised source, whose
    batched outputs depend on the batch)."""
    import onnxruntime as ort

    from ..core.types import softmax

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(str(f), options, providers=["CPUExecutionProvider"])
                for f in (src_file, out_file)]

    def run(session: Any, batch: list[str]) -> np.ndarray:
        arrays = encoder.encode(batch).arrays
        logits = session.run(None, {i.name: arrays[i.name] for i in session.get_inputs()})[0]
        return softmax(np.asarray(logits, dtype=np.float64))

    # One text at a time (as a user sees each label), then in padded batches of 32.
    worst, agree, ref_alone, alone = 0.0, 0, [], []
    for text in texts:
        ref, new = (run(s, [text]) for s in sessions)
        worst = max(worst, float(np.max(np.abs(ref - new))))
        agree += int(ref.argmax(1)[0] == new.argmax(1)[0])
        ref_alone.append(ref[0])
        alone.append(new[0])
    batch_diff = 0.0
    for i in range(0, len(texts), 32):
        new = run(sessions[1], texts[i : i + 32])
        ref = run(sessions[0], texts[i : i + 32]) if reference_batched else np.asarray(ref_alone[i : i + 32])
        worst = max(worst, float(np.max(np.abs(ref - new))))
        batch_diff = max(batch_diff, float(np.max(np.abs(new - np.asarray(alone[i : i + 32])))))
    return worst, agree, batch_diff


def rowwise_int8(
    model: str | Path,
    output_dir: str | Path,
    *,
    check_texts: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Any:
    """Write a batch-invariant copy of a dynamically quantised ONNX text classifier, and check it.

    The copy (:func:`~confroute.export.rowwise.rowwise_int8_graph`) goes to ``output_dir`` with the tokenizer and config
    files; the source is only read. Both models are then run on ``check_texts``: the result
    compares the copy with the source run **one text at a time** (the only way the source's
    outputs do not depend on other texts), and reports the copy's batch invariance (a text alone
    against the same text in a padded batch of 32).

    Parameters
    ----------
    model : path
        A directory holding a dynamically quantised ``model.onnx`` (with its tokenizer), or the
        ``.onnx`` file: e.g. ``confroute export MODEL OUT --quantize int8`` or
        ``shared/models/mpnet-sst2-int8``.
    output_dir : path
        Where the copy goes; must differ from the model's directory.
    check_texts : sequence of str, optional
        Texts both models are run on (default :data:`DEFAULT_CHECK_TEXTS`).
    overwrite : bool, default False
        Replace an existing ``output_dir/model.onnx``.

    Returns
    -------
    QuantizeResult
        ``mode="rowwise"``, ``reference="dynamic int8, one text per call"``; ``fp32_bytes`` is
        the source file's size (the source is int8 here).

    Raises
    ------
    ValueError
        When the model is not a dynamically quantised graph this rewrite knows (see
        :func:`rowwise_int8_graph`).
    ExportMismatchError
        When the copy gives non-finite outputs.

    Examples
    --------
    >>> r = rowwise_int8("shared/models/mpnet-sst2-int8", "/tmp/mpnet-rowwise")  # doctest: +SKIP
    >>> r.max_batch_diff, r.label_agreement                                      # doctest: +SKIP
    (0.0, 1.0)
    """
    from ..predictors._text import TextEncoder, default_max_length
    from .rowwise import import_onnx, rowwise_int8_graph

    onnx = import_onnx()

    src_file, src_dir, dst, out_file = copy_target(model, output_dir, overwrite)
    texts = list(check_texts if check_texts is not None else DEFAULT_CHECK_TEXTS)
    if not texts:
        raise ValueError("check_texts must hold at least one text")
    new, _ = rowwise_int8_graph(onnx.load(str(src_file)))
    dst.mkdir(parents=True, exist_ok=True)
    onnx.save(new, str(out_file))
    copy_side_files(src_dir, dst)
    encoder = TextEncoder(src_dir, max_length=default_max_length(src_dir), source=str(src_file))
    worst, agree, batch_diff = compare_int8(encoder, src_file, out_file, texts, reference_batched=False)
    if not np.isfinite(worst):
        raise ExportMismatchError(f"the row-wise int8 model at {out_file} gives non-finite outputs")
    return QuantizeResult(out_file, dst, "rowwise", worst, agree / len(texts), len(texts), src_file.stat().st_size,
                          out_file.stat().st_size, batch_diff, 0, reference="dynamic int8, one text per call")


def batch_composition_diff(predictor: Any, texts: Sequence[Any], *, compositions: int = 5, max_batch_size: int = 32,
                           seed: int = 0) -> float:
    """Largest change of any probability of an input across random batch compositions.

    ``texts`` are shuffled and cut into batches of random sizes 1..``max_batch_size``,
    ``compositions`` times (seeds ``seed``, ``seed + 1``, ...), and each batch goes to
    ``predictor.predict`` as it is (give a predictor that does not re-batch or sort: e.g.
    ``ONNXRuntimePredictor(..., sort_by_length=False)``). 0 (or float rounding) for a model whose
    rows are computed on their own (``"static"``, ``"rowwise"``); up to about 0.4 for dynamic
    int8. The check of issue 25: ``<= 1e-5`` on 200 SST-2 dev sentences.

    Examples
    --------
    >>> from confroute.predictors import CallablePredictor
    >>> import numpy as np
    >>> def batch_mean(xs):  # a model whose rows depend on their batch
    ...     x = np.asarray(xs, dtype=float)
    ...     p = 1 / (1 + np.exp(-(x - x.mean())))
    ...     return np.stack([1 - p, p], axis=1)
    >>> batch_composition_diff(CallablePredictor(batch_mean), [0.0, 1.0, 2.0, 3.0]) > 0.1
    True
    """
    if compositions < 2:
        raise ValueError(f"compositions must be >= 2 to compare anything, got {compositions}")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    items = list(texts)
    if not items:
        raise ValueError("texts must hold at least one input")
    runs: list[np.ndarray] = []
    for k in range(compositions):
        rng = np.random.default_rng(seed + k)
        perm = rng.permutation(len(items))
        probs: np.ndarray | None = None
        i = 0
        while i < len(perm):
            idx = perm[i : i + int(rng.integers(1, max_batch_size + 1))]
            batch = np.asarray(predictor.predict([items[j] for j in idx]).probs, dtype=np.float64)
            if probs is None:
                probs = np.empty((len(items), batch.shape[1]))
            probs[idx] = batch
            i += len(idx)
        assert probs is not None  # items is not empty
        runs.append(probs)
    stack = np.stack(runs)
    return float(np.max(stack.max(0) - stack.min(0)))
