"""Run an exported text classifier (``model.onnx`` + tokenizer + config) with ONNX Runtime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.types import Predictions
from ._text import (
    EncodedBatch,
    TextInputsMixin,
    TextEncoder,
    check_single_label,
    check_texts,
    default_max_length,
    model_classes,
    onnx_file,
)
from .base import Predictor

__all__ = ["ONNXRuntimePredictor", "is_dynamically_quantized"]

_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def is_dynamically_quantized(path: str | Path) -> bool:
    """True when the ONNX graph at ``path`` has ``DynamicQuantizeLinear`` nodes.

    Such graphs (ONNX Runtime's ``quantize_dynamic``, :func:`confroute.export.quantize_onnx`)
    compute activation scales from each batch, so their outputs depend on batch composition. The
    op name is stored as a plain string in the protobuf, so a byte search finds it without onnx.
    """
    return b"DynamicQuantizeLinear" in Path(path).read_bytes()


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("ONNXRuntimePredictor needs onnxruntime: pip install 'confroute[onnx]'") from None
    return onnxruntime


class ONNXRuntimePredictor(TextInputsMixin, Predictor):
    """A sequence-classification ONNX model run by ONNX Runtime.

    The directory layout is the one :func:`confroute.export_to_onnx` writes and SparseZoo
    deployments use: ``model.onnx`` with inputs among ``input_ids``, ``attention_mask``,
    ``token_type_ids`` (any batch and sequence length) and an output ``logits`` of shape
    (batch, classes), next to ``tokenizer.json`` (or other tokenizer files) and ``config.json``
    (whose ``id2label`` names the classes). The files are only read.

    ONNX Runtime is the maintained runtime for these models (DeepSparse reached end of life in
    June 2025), and it returns exactly what :class:`DeepSparsePredictor` returns on the same
    directory, to float precision.

    Parameters
    ----------
    model : path or onnxruntime.InferenceSession
        A directory holding ``model.onnx``, the ``.onnx`` file itself (tokenizer and config are
        read from its directory), or a ready session (then pass ``tokenizer``).
    batch_size : int, default 32
        Texts per call to the session.
    sort_by_length : bool or None, default None
        Tokenise the whole call once, cut it into batches in order of token length (each batch
        is then padded only to about its own texts' length), and return the outputs in input
        order: 1.4x-2.8x faster on SST-2 (docs/backends.md), same outputs for float models.
        ``None`` (default): on, except for dynamically quantised (int8) graphs. Those quantise
        activations with one scale per batch, so their outputs depend on which texts share a
        batch, and batches of similar length cost accuracy on SST-2 (MPNet int8 0.9209 in input
        order, 0.9117 sorted; 0.9220 one text at a time). ``True``/``False`` force it.
    num_threads : int or None, default None
        ``intra_op_num_threads`` of this session only (``None``: ONNX Runtime's default, one
        per physical core). Unlike :class:`HFPipelinePredictor` this setting is per predictor,
        not process-wide.
    max_length : int, optional
        Truncate longer inputs to this many tokens (warning once). Default: the model's limit
        from its tokenizer/config, or ``sequence_length`` when that is set.
    sequence_length : int, optional
        Pad every batch to exactly this many tokens (static shapes, as DeepSparse runs). By
        default each batch is padded to its longest text, which is faster on ONNX Runtime and
        gives the same outputs.
    tokenizer : path or tokenizer, optional
        Overrides the tokenizer in the model directory.
    classes : sequence of str, optional
        Overrides ``id2label`` from ``config.json``.
    providers : list of str, optional
        ONNX Runtime execution providers; default ``["CPUExecutionProvider"]``.
    name : str, optional

    Examples
    --------
    >>> p = ONNXRuntimePredictor("models/minilm-sst2-pruned80", num_threads=2)  # doctest: +SKIP
    >>> p.predict(["a gorgeous, witty film"]).labels  # doctest: +SKIP
    array(['POSITIVE'], dtype=object)
    """

    def __init__(
        self,
        model: str | Path | Any,
        *,
        batch_size: int = 32,
        num_threads: int | None = None,
        max_length: int | None = None,
        sequence_length: int | None = None,
        sort_by_length: bool | None = None,
        tokenizer: Any = None,
        classes: Sequence[str] | None = None,
        providers: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        ort = _import_ort()
        self.batch_size = int(batch_size)
        self.num_threads = num_threads
        self.sequence_length = sequence_length
        model_dir: Path | None
        if isinstance(model, (str, Path)):
            path, model_dir = onnx_file(model)
            self.name = name or f"onnxruntime:{model_dir.name}"
            check_single_label(model_dir, self.name)
            options = ort.SessionOptions()
            if num_threads is not None:
                options.intra_op_num_threads = int(num_threads)
            # One model call at a time: inter-op threads would only compete with intra-op ones.
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
            )
            self.model_path: Path | None = path
        elif hasattr(model, "run") and hasattr(model, "get_inputs"):
            if tokenizer is None:
                raise ValueError("pass tokenizer= (a model directory or tokenizer) with an InferenceSession")
            model_dir = Path(tokenizer) if isinstance(tokenizer, (str, Path)) else None
            self.name = name or "onnxruntime"
            self.session = model
            self.model_path = None
        else:
            raise TypeError(
                "model must be a directory, an .onnx file or an onnxruntime.InferenceSession, "
                f"got {type(model).__name__}"
            )
        if max_length is None:
            max_length = sequence_length or (default_max_length(model_dir) if model_dir else 512)
        self.max_length = int(max_length)
        self.encoder = TextEncoder(
            tokenizer if tokenizer is not None else model_dir,
            max_length=self.max_length,
            pad_to=sequence_length,
            source=self.name,
        )
        if classes is None and model_dir is not None:
            classes = model_classes(model_dir)
        self.classes = None if classes is None else tuple(str(c) for c in classes)
        self._inputs = {i.name: _ORT_INT_TYPES.get(i.type, np.int64) for i in self.session.get_inputs()}
        unknown = set(self._inputs) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown:
            raise ValueError(
                f"{self.name}: model inputs {sorted(unknown)} are not text-classifier inputs "
                "(expected input_ids, attention_mask, token_type_ids)"
            )
        outputs = [o.name for o in self.session.get_outputs()]
        self._output = "logits" if "logits" in outputs else outputs[0]
        #: True when the graph quantises activations at run time (per batch).
        self.dynamic_quantized = self.model_path is not None and is_dynamically_quantized(self.model_path)
        self.sort_by_length = (not self.dynamic_quantized) if sort_by_length is None else bool(sort_by_length)

    def _feed(self, batch: EncodedBatch) -> dict[str, np.ndarray]:
        return {k: batch.arrays[k].astype(dtype, copy=False) for k, dtype in self._inputs.items()}

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits for one batch of texts (or :class:`TokenizedTexts`), shape (n, k)."""
        batch = self.encoder.encode(check_texts(texts, self.name))
        (logits,) = self.session.run([self._output], self._feed(batch))
        return np.asarray(logits)

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        return Predictions.from_logits(self.predict_logits(inputs), self.classes, source=self.name)

    def __repr__(self) -> str:
        return (
            f"ONNXRuntimePredictor(name={self.name!r}, batch_size={self.batch_size}, "
            f"num_threads={self.num_threads}, max_length={self.max_length}, "
            f"sequence_length={self.sequence_length}, sort_by_length={self.sort_by_length})"
        )
