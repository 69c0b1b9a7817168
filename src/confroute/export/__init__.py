"""Export a Hugging Face sequence-classification model to ONNX for the ONNX backends.

The output directory is what :class:`~confroute.predictors.ONNXRuntimePredictor` and
:class:`~confroute.predictors.DeepSparsePredictor` read: ``model.onnx`` (opset 14, inputs
``input_ids``/``attention_mask``/``token_type_ids`` with dynamic batch and sequence axes,
output ``logits``) next to a copy of the tokenizer and ``config.json``. The export is checked:
ONNX Runtime and PyTorch are run on the same texts and the largest absolute logit difference
must stay within a tolerance.

``quantize="int8"`` (or :func:`quantize_onnx` on an existing ONNX directory) writes a dynamically
quantised copy instead (int8 weights, activations quantised per batch at run time, by ONNX
Runtime's ``quantize_dynamic``), and reports how closely it follows the float32 model: the
largest probability difference and the share of equal labels on the check texts.
``quantize="static"`` with ``calibration_texts`` writes a statically quantised (QDQ) copy whose
activation scales are fixed from those texts, so that its outputs do not depend on batch
composition (:mod:`confroute.export.quantize`). ``quantize="rowwise"`` (or :func:`rowwise_int8` on
an existing dynamically quantised model, which needs only ``onnx``) quantises every activation
row with its own scale: batch-invariant with no calibration data, at close to dynamic int8's speed
(:mod:`confroute.export.rowwise`). The quantisation tools need ``onnx>=1.16`` and
``ml_dtypes`` (so numpy 2), which cannot share an environment with DeepSparse: install them with
``pip install 'confroute[quantize]'``.

Command line: ``confroute export MODEL_DIR OUTPUT_DIR [--quantize int8|rowwise|static --calibration FILE]`` (:mod:`confroute.cli.export`).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import DEFAULT_CHECK_TEXTS, copy_side_files, copy_target
from .quantize import (CALIBRATION_METHODS, QUANTIZE_MODES, QuantizeResult, check_quantize_mode, import_quantization,
                       batch_composition_diff, quantize_onnx, rowwise_int8)
from .rowwise import rowwise_int8_graph
from ..exceptions import ExportMismatchError

__all__ = [
    "export_to_onnx",
    "ExportResult",
    "ExportMismatchError",
    "DEFAULT_CHECK_TEXTS",
    "add_hidden_output",
    "HiddenOutputResult",
    "quantize_onnx",
    "rowwise_int8",
    "rowwise_int8_graph",
    "batch_composition_diff",
    "QuantizeResult",
    "QUANTIZE_MODES",
    "CALIBRATION_METHODS",
]


_INPUTS = ("input_ids", "attention_mask", "token_type_ids")



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
        Largest absolute difference between PyTorch and ONNX Runtime logits on the check texts
        (of the float32 graph, before any quantisation).
    n_checked : int
        Number of texts compared.
    quantization : QuantizeResult or None
        With ``quantize="int8"``: how the int8 model written to ``onnx_path`` compares with the
        float32 one.
    """

    onnx_path: Path
    output_dir: Path
    input_names: tuple[str, ...]
    opset: int
    max_abs_diff: float
    n_checked: int
    quantization: QuantizeResult | None = None


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
    quantize: str | None = None,
    calibration_texts: Sequence[str] | None = None,
    calibration_method: str = "minmax",
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
        Texts for the check (default :data:`DEFAULT_CHECK_TEXTS`); run one at a time and in
        padded batches of 32.
    overwrite : bool, default False
        Replace an existing ``output_dir/model.onnx``.
    quantize : {None, "int8", "static"}, default None
        ``"int8"``: export to float32 in a temporary directory, check it against PyTorch, then
        write a dynamically quantised copy as ``output_dir/model.onnx`` (see
        :func:`quantize_onnx`); ``result.quantization`` reports its agreement with float32 on
        ``check_texts``. ``"static"``: the same, statically quantised on ``calibration_texts``
        (batch-invariant outputs). Needs ``pip install 'confroute[quantize]'``.
    calibration_texts : sequence of str, optional
        With ``quantize="static"`` (required there): texts that fix the activation scales.
    calibration_method : {"minmax", "percentile", "entropy"}, default "minmax"
        With ``quantize="static"``: how ranges are taken from the calibration activations.

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportMismatchError
        When the difference exceeds ``atol`` (the file is left in place for inspection).
    ImportError
        With ``quantize="int8"`` when the quantisation tools are missing (names the extra).

    Examples
    --------
    >>> r = export_to_onnx("models/minilm-sst2-dense", "~/.cache/confroute/minilm-dense")  # doctest: +SKIP
    >>> r.max_abs_diff < 1e-4  # doctest: +SKIP
    True
    >>> q = export_to_onnx("models/minilm-sst2-dense", "minilm-int8", quantize="int8")  # doctest: +SKIP
    >>> q.quantization.label_agreement  # doctest: +SKIP
    1.0
    """
    if quantize is not None:
        return _export_quantized(model_dir, output_dir, quantize, opset, atol, overwrite, check_texts,
                                 calibration_texts, calibration_method)
    if calibration_texts is not None:
        raise ValueError("calibration_texts is for quantize='static' only")
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

    _torch_export(torch, model, tokenizer, input_names, onnx_path, opset)
    copy_side_files(src, dst)

    texts = list(check_texts if check_texts is not None else DEFAULT_CHECK_TEXTS)
    diff = _compare(model.eval(), tokenizer, onnx_path, input_names, texts, torch)
    result = ExportResult(onnx_path, dst, input_names, opset, diff, len(texts))
    if not np.isfinite(diff) or diff > atol:
        raise ExportMismatchError(
            f"ONNX Runtime logits differ from PyTorch by up to {diff:.3g} (> atol={atol:g}) on "
            f"{len(texts)} texts; the export is at {onnx_path}"
        )
    return result


def _export_quantized(model_dir: Any, output_dir: Any, quantize: str, opset: int, atol: float, overwrite: bool,
                      check_texts: Sequence[str] | None, calibration_texts: Sequence[str] | None,
                      calibration_method: str) -> ExportResult:
    """``export_to_onnx(..., quantize=...)``: a float32 export into a scratch folder, then its
    quantised copy into ``output_dir``."""
    check_quantize_mode(quantize)
    if quantize == "static" and not calibration_texts:
        raise ValueError("quantize='static' needs calibration_texts: a few hundred texts from the training data")
    import_quantization()  # fail before the export when the tools are missing
    dst = Path(output_dir).expanduser().resolve()
    if (dst / "model.onnx").exists() and not overwrite:
        raise FileExistsError(f"{dst / 'model.onnx'} exists; pass overwrite=True to replace it")
    with tempfile.TemporaryDirectory(prefix="confroute-export-fp32-") as tmp:
        fp32 = export_to_onnx(model_dir, tmp, opset=opset, atol=atol, check_texts=check_texts)
        q = quantize_onnx(tmp, dst, mode=quantize, check_texts=check_texts, overwrite=overwrite,
                          calibration_texts=calibration_texts, calibration_method=calibration_method)
    return ExportResult(q.onnx_path, q.output_dir, fp32.input_names, opset, fp32.max_abs_diff, fp32.n_checked, q)


def _torch_export(torch: Any, model: Any, tokenizer: Any, input_names: tuple[str, ...], onnx_path: Path,
                  opset: int) -> None:
    """Trace ``model`` (positional inputs, bare logits output) into ``onnx_path``."""

    class _Logits(torch.nn.Module):  # type: ignore[name-defined]
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
        # backends need); its deprecation notices (the exporter's and its internals') are not
        # actionable for users.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
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


def _forward_arguments(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def _compare(
    model: Any, tokenizer: Any, onnx_path: Path, input_names: Sequence[str], texts: list[str], torch: Any
) -> float:
    """Max |logit difference| between PyTorch and ONNX Runtime, per text and in padded batches."""
    if not texts:
        raise ValueError("check_texts must hold at least one text")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("checking the export needs onnxruntime: pip install 'confroute[onnx]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a check: one thread does not compete with the user's jobs
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    batches = [[t] for t in texts] + [texts[i : i + 32] for i in range(0, len(texts), 32)]
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


# --------------------------------------------------------------------------- hidden-state output
@dataclass(frozen=True)
class HiddenOutputResult:
    """A copy of an ONNX classifier that also returns the classifier head's input.

    Attributes
    ----------
    onnx_path : Path
        The new ``model.onnx`` (outputs: the original ones, then ``output_name``).
    output_name : str
        Name of the added graph output.
    tensor : str
        The graph tensor it exposes (the data input of the final Gemm/MatMul).
    hidden_size : int or None
        Its last dimension, when the classifier weight says.
    max_abs_diff : float
        Largest absolute difference between the copy's and the original's logits on the check
        texts (0.0: the graph computes exactly what it did).
    """

    onnx_path: Path
    output_name: str
    tensor: str
    hidden_size: int | None
    max_abs_diff: float


def _classifier_input(graph: Any, logits_name: str) -> tuple[str, int | None]:
    """The data input of the Gemm/MatMul(+Add) that produces ``logits_name``, and its width."""
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    node = producers.get(logits_name)
    if node is not None and node.op_type == "Add":
        # MatMul + Add (bias) exports: follow the non-constant operand.
        data = [x for x in node.input if x not in inits]
        node = producers.get(data[0]) if len(data) == 1 else None
    if node is None or node.op_type not in ("Gemm", "MatMul"):
        what = "a graph input" if node is None else f"a {node.op_type} node ({node.name})"
        raise ValueError(
            f"output {logits_name!r} is produced by {what}, not a Gemm/MatMul classifier layer; "
            "pass tensor= to name the tensor to expose"
        )
    x, w = node.input[0], node.input[1]
    width = None
    if w in inits:
        dims = list(inits[w].dims)
        trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
        if len(dims) == 2:
            width = int(dims[1] if trans_b else dims[0])
    return x, width


def add_hidden_output(
    model: str | Path,
    output_dir: str | Path,
    *,
    tensor: str | None = None,
    output_name: str = "pooled",
    check_texts: Sequence[str] | None = None,
    atol: float = 1e-5,
    overwrite: bool = False,
) -> HiddenOutputResult:
    """Copy an ONNX text classifier, adding the classifier head's input as a graph output.

    The cheap model runs on every input anyway, so its last hidden state (the pooled [CLS]
    vector that feeds the classification layer) is a free feature for a correctness judge
    (:class:`confroute.calibration.judge.CorrectnessJudge` ``extra_features``). This writes a copy of
    ``model`` to ``output_dir`` (tokenizer and config files copied next to it) whose graph has
    one more output, ``output_name``, an ``Identity`` of that tensor, and checks with ONNX
    Runtime that the original outputs are unchanged. The source is only read.

    Parameters
    ----------
    model : path
        A directory holding ``model.onnx`` (with its tokenizer), or the ``.onnx`` file.
    output_dir : path
        Where the copy goes; must differ from the model's directory.
    tensor : str, optional
        Graph tensor to expose. Default: the data input of the final ``Gemm`` or ``MatMul``
        (optionally followed by a bias ``Add``) that produces the first graph output.
    output_name : str, default "pooled"
    check_texts : sequence of str, optional
        Texts both graphs are run on (default :data:`DEFAULT_CHECK_TEXTS`, as one padded batch).
    atol : float, default 1e-5
        Largest allowed absolute difference of the first output between copy and original.
    overwrite : bool, default False
        Replace an existing ``output_dir/model.onnx``.

    Returns
    -------
    HiddenOutputResult

    Raises
    ------
    ValueError
        When the final layer is not a Gemm/MatMul (and ``tensor`` is not given), or the name
        is taken.
    ExportMismatchError
        When the copy's first output differs from the original's by more than ``atol``.

    Examples
    --------
    >>> r = add_hidden_output("models/minilm-sst2-pruned80", "/tmp/pruned80-pooled")  # doctest: +SKIP
    >>> r.output_name, r.hidden_size, r.max_abs_diff  # doctest: +SKIP
    ('pooled', 384, 0.0)
    """
    try:
        import onnx
        import onnxruntime as ort
        from onnx import helper
    except ImportError:
        raise ImportError("add_hidden_output needs onnx and onnxruntime: pip install 'confroute[onnx]'") from None
    from ..predictors._text import TextEncoder, default_max_length

    src_file, src_dir, dst, out_file = copy_target(model, output_dir, overwrite)

    proto = onnx.load(str(src_file))
    graph = proto.graph
    first = graph.output[0]
    if output_name in {o.name for o in graph.output} | {x for n in graph.node for x in n.output}:
        raise ValueError(f"the graph already has a tensor named {output_name!r}; pass another output_name")
    if tensor is None:
        tensor, width = _classifier_input(graph, first.name)
    else:
        known = {x for n in graph.node for x in n.output} | {i.name for i in graph.input}
        if tensor not in known:
            raise ValueError(f"no tensor {tensor!r} in the graph of {src_file}")
        width = None
    batch_dim = first.type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_param or (batch_dim.dim_value or None)
    graph.node.append(helper.make_node("Identity", [tensor], [output_name], name=f"expose_{output_name}"))
    graph.output.append(
        helper.make_tensor_value_info(output_name, first.type.tensor_type.elem_type, [batch, width])
    )
    onnx.checker.check_model(proto)
    dst.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out_file))
    copy_side_files(src_dir, dst)

    texts = list(check_texts if check_texts is not None else DEFAULT_CHECK_TEXTS)
    if not texts:
        raise ValueError("check_texts must hold at least one text")
    encoder = TextEncoder(src_dir, max_length=default_max_length(src_dir), source=str(src_file))
    batch_arrays = encoder.encode(texts).arrays
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    before = ort.InferenceSession(str(src_file), options, providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(str(out_file), options, providers=["CPUExecutionProvider"])
    feed = {i.name: batch_arrays[i.name] for i in before.get_inputs()}
    (ref,) = before.run([first.name], feed)
    got, hidden = after.run([first.name, output_name], feed)
    diff = float(np.max(np.abs(np.asarray(ref) - np.asarray(got))))
    if not np.isfinite(diff) or diff > atol:
        raise ExportMismatchError(
            f"adding output {output_name!r} changed {first.name!r} by up to {diff:.3g} (> atol={atol:g}); "
            f"the copy is at {out_file}"
        )
    if width is None:
        width = int(np.asarray(hidden).shape[-1])
    return HiddenOutputResult(out_file, output_name, tensor, width, diff)
