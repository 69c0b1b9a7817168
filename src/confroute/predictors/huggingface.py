"""Hugging Face ``transformers`` text-classification models as predictors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..core.types import Predictions
from ._text import TextInputsMixin, check_texts, classes_from_id2label, is_multi_label
from .base import Predictor

__all__ = ["HFPipelinePredictor", "HUB_PREFIX"]

#: How a Hugging Face Hub id is written (any other name is a local path).
HUB_PREFIX = "hub:"


def _import_hf() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise ImportError(
            "HFPipelinePredictor needs transformers and torch: pip install 'confroute[hf]'"
        ) from None
    return transformers, torch


@contextmanager
def _torch_threads(torch: Any, n: int | None) -> Iterator[None]:
    """Use ``n`` intra-op threads inside the block, then restore the previous setting."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class HFPipelinePredictor(TextInputsMixin, Predictor):
    """A ``transformers`` text-classification pipeline, returning every class's logit.

    The pipeline is called with ``function_to_apply="none"`` and ``top_k=None``, so it returns
    the raw score (logit) of every class; they are put back in ``id2label`` column order and
    turned into probabilities with a softmax. The logits are kept for calibration.

    Parameters
    ----------
    model : path, str or transformers.Pipeline
        A local model directory (loaded offline, ``local_files_only=True``); a Hugging Face Hub
        id written ``"hub:ORG/NAME"``, e.g. ``"hub:distilbert-base-uncased-finetuned-sst-2-english"``
        (downloaded: needs internet); or an existing ``pipeline("text-classification", ...)``.
        A name without ``hub:`` is always a path: one that does not exist is an error
        (``FileNotFoundError``) at once, never a download attempt.
    batch_size : int, default 32
        Texts per forward pass. Each batch is padded to its longest text.
    sort_by_length : bool, default True
        Cut each call into batches in order of token length (then restore the input order), so
        that each batch is padded only to about its own texts' length. ``False`` batches in
        input order. The outputs are the same either way.
    num_threads : int or None, default None
        Torch intra-op threads while this predictor runs. ``torch.set_num_threads`` is
        process-wide, so it is set for the duration of each batch and restored afterwards;
        do not run two torch models with different settings concurrently. ``None`` leaves
        torch's setting alone.
    max_length : int, optional
        Truncate longer inputs to this many tokens (default: the tokenizer's
        ``model_max_length``, capped at the model's ``max_position_embeddings``).
    device : int, str or torch.device, optional
        Where a model loaded from a path or Hub id runs (default CPU).
    classes : sequence of str, optional
        Overrides the class names from ``config.id2label``.
    name : str, optional

    Examples
    --------
    >>> p = HFPipelinePredictor("models/minilm-sst2-dense", num_threads=2)  # doctest: +SKIP
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
        device: Any = None,
        classes: Sequence[str] | None = None,
        name: str | None = None,
        sort_by_length: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        transformers, torch = _import_hf()
        self._torch = torch
        self.batch_size = int(batch_size)
        self.num_threads = num_threads
        self.sort_by_length = bool(sort_by_length)
        if isinstance(model, (str, Path)):
            self.pipeline = self._load(transformers, model, device)
            default_name = f"hf:{Path(str(model).removeprefix(HUB_PREFIX)).name}"
        elif isinstance(model, transformers.Pipeline):
            if model.tokenizer is None:
                raise ValueError("the pipeline has no tokenizer; text classification needs one")
            self.pipeline = model
            default_name = f"hf:{getattr(model.model.config, '_name_or_path', '') or 'pipeline'}"
        else:
            raise TypeError(
                "model must be a model directory, a Hub id or a transformers pipeline, "
                f"got {type(model).__name__}"
            )
        self.name = name or default_name
        config = self.pipeline.model.config
        if is_multi_label(config):
            raise ValueError(
                f"{self.name} is a multi-label model (problem_type='multi_label_classification'); "
                "confroute routes single-label classifiers whose classes form one softmax distribution"
            )
        model_classes = classes_from_id2label(config.id2label, self.name)
        if model_classes is None or len(model_classes) < 2:
            raise ValueError(f"{self.name}: the model config names {model_classes}; need >= 2 classes")
        # The pipeline labels its scores with id2label names; this maps them back to columns.
        self._column = {label: i for i, label in enumerate(model_classes)}
        self.classes = tuple(str(c) for c in classes) if classes is not None else model_classes
        if len(self.classes) != len(model_classes):
            raise ValueError(
                f"{self.name}: classes={list(self.classes)} but the model has {len(model_classes)} outputs"
            )
        self.max_length = int(max_length) if max_length is not None else self._default_max_length()

    @staticmethod
    def _load(transformers: Any, model: str | Path, device: Any) -> Any:
        local = not (isinstance(model, str) and model.startswith(HUB_PREFIX))
        if local:
            path = Path(model).expanduser()
            if not path.exists():
                raise FileNotFoundError(
                    f"no such model directory: {path} (for a model on the Hugging Face Hub, "
                    f"write {HUB_PREFIX}{model}; it downloads, so it needs internet)"
                )
            if not path.is_dir():
                raise ValueError(f"{path} is a file; pass the model directory (config.json, weights, tokenizer)")
            source = str(path)
        else:
            source = str(model)[len(HUB_PREFIX):]
            if not source:
                raise ValueError(f"{model!r}: name the Hub model after {HUB_PREFIX!r}, e.g. {HUB_PREFIX}ORG/NAME")
        # A local directory never triggers a download; a Hub id does (users online).
        kwargs = {"local_files_only": True} if local else {}
        try:
            tok = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            net = transformers.AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
        except OSError as exc:
            where = "directory" if local else "Hub id (needs internet) or directory"
            raise OSError(
                f"could not load a text-classification model from {where} {source!r}: {exc}"
            ) from None
        net.eval()
        return transformers.pipeline("text-classification", model=net, tokenizer=tok, device=device)

    def _default_max_length(self) -> int:
        limits = []
        tok_max = getattr(self.pipeline.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 10**6:
            limits.append(tok_max)
        positions = getattr(self.pipeline.model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limits.append(positions)
        return min(limits) if limits else 512

    def _token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each text after truncation (the sort key for length-aware batching)."""
        enc = self.pipeline.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False)
        return np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=len(texts))

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits for one batch of texts, shape (n, k), columns in ``id2label`` order."""
        texts = check_texts(texts, self.name)
        if not texts:
            return np.zeros((0, len(self._column)))
        with _torch_threads(self._torch, self.num_threads), self._torch.inference_mode():
            out = self.pipeline(
                texts,
                batch_size=min(self.batch_size or len(texts), len(texts)),
                truncation=True,
                max_length=self.max_length,
                function_to_apply="none",
                top_k=None,
            )
        logits = np.empty((len(texts), len(self._column)), dtype=np.float64)
        for i, row in enumerate(out):
            if len(row) != len(self._column):
                raise ValueError(f"{self.name}: pipeline returned {len(row)} scores for input {i}")
            for item in row:
                logits[i, self._column[item["label"]]] = item["score"]
        return logits

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        return Predictions.from_logits(self.predict_logits(inputs), self.classes, source=self.name)

    def __repr__(self) -> str:
        return (
            f"HFPipelinePredictor(name={self.name!r}, batch_size={self.batch_size}, "
            f"num_threads={self.num_threads}, max_length={self.max_length}, "
            f"sort_by_length={self.sort_by_length})"
        )
