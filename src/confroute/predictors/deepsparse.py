"""Run a (sparse) ONNX text classifier with the DeepSparse engine.

DeepSparse traps this module handles, so users do not have to:

* Only ``deepsparse==1.8.0`` works (the project reached end of life in June 2025; 1.9.0 is
  empty). It needs Python < 3.12 (no wheels after that), ``numpy<2`` (with numpy 2 it gives
  silently wrong outputs) and ``onnx<1.15``. These are checked before the import, with an error
  naming the problem.
* Importing it starts usage analytics unless ``NM_DISABLE_ANALYTICS`` is set; confroute sets it
  to ``1`` unless the user chose a value.
* Compiling rewrites ``model.onnx`` in place (to fix the input shapes). confroute compiles a
  copy in a temporary directory and never writes to the user's files.
* Its sparse kernels only run with static shapes, so an engine is compiled for one batch size
  and one sequence length. Padding every text to one long length wastes most of the compute on
  short texts, so this predictor compiles one engine per length bucket (by default 12, 40, 64
  and 128 tokens up to ``sequence_length``, each on first use; :meth:`DeepSparsePredictor.tune_buckets`
  picks them from timings on the user's machine), sorts a call's texts by token
  length, and sends each batch to the smallest bucket that holds its longest text. A last batch
  smaller than ``batch_size`` is padded with dummy rows that are dropped from the output.
* Its ``Pipeline`` returns softmax scores only; this predictor calls the compiled engine
  directly, so it returns the logits that temperature scaling needs.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.types import Predictions
from ._text import (
    TextEncoder,
    TextInputsMixin,
    TokenizedTexts,
    check_single_label,
    check_texts,
    classes_from_id2label,
    model_classes,
    onnx_file,
)
from .base import Predictor

__all__ = ["DeepSparsePredictor", "import_deepsparse", "keep_faster_buckets", "DEFAULT_BUCKETS", "TUNING_CANDIDATES"]

_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

#: Default length buckets (tokens); those above ``sequence_length`` are dropped, and
#: ``sequence_length`` itself is always the last bucket. Chosen by measurement
#: (:meth:`DeepSparsePredictor.tune_buckets`, docs/backends.md): DeepSparse 1.8 ran 13-32-token
#: engines about 2x slower per token (1.6-2.9x) than 12- or 36+-token ones on the machine we
#: measured, so there is no bucket in that range.
DEFAULT_BUCKETS = (12, 40, 64, 128)

#: The lengths :meth:`DeepSparsePredictor.tune_buckets` tries by default.
TUNING_CANDIDATES = (8, 12, 16, 24, 32, 40, 48, 64, 96)


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def import_deepsparse() -> Any:
    """Import ``deepsparse`` after checking that this environment can run it correctly.

    Raises
    ------
    ImportError
        On Python >= 3.12, numpy >= 2 or onnx >= 1.15 (each named in the message), or when
        deepsparse is not installed.
    """
    if sys.version_info[:2] >= (3, 12):
        raise ImportError(
            "DeepSparsePredictor needs Python < 3.12: deepsparse 1.8.0, its last working release "
            "(end of life since June 2025), has no build for Python "
            f"{sys.version_info[0]}.{sys.version_info[1]}. "
            "Use ONNXRuntimePredictor on the same model directory instead."
        )
    if version_tuple(np.__version__) >= (2,):
        raise ImportError(
            f"DeepSparsePredictor needs numpy < 2 (found numpy {np.__version__}): deepsparse 1.8.0 "
            "returns wrong outputs under numpy 2. Install a working set with "
            "pip install 'confroute[deepsparse]' (pins numpy<2), or use ONNXRuntimePredictor."
        )
    try:
        from importlib.metadata import PackageNotFoundError, version

        onnx_version = version("onnx")
    except PackageNotFoundError:
        onnx_version = None
    if onnx_version is not None and version_tuple(onnx_version) >= (1, 15):
        raise ImportError(
            f"DeepSparsePredictor needs onnx < 1.15 (found onnx {onnx_version}), which deepsparse "
            "1.8.0 requires: pip install 'confroute[deepsparse]' (pins onnx<1.15)."
        )
    # Must be set before the first import; an explicit user choice wins.
    os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
    try:
        import deepsparse
    except ImportError as exc:
        raise ImportError(
            f"DeepSparsePredictor needs deepsparse==1.8.0 ({exc}): pip install 'confroute[deepsparse]'"
        ) from None
    return deepsparse


class DeepSparsePredictor(TextInputsMixin, Predictor):
    """A sequence-classification ONNX model (typically a sparse one) run by DeepSparse.

    Reads the same directory layout as :class:`ONNXRuntimePredictor` (``model.onnx`` +
    tokenizer + ``config.json``) and returns the same logits on it, to float precision.
    See the module docstring for the DeepSparse traps handled here.

    Parameters
    ----------
    model : path, str or deepsparse Pipeline
        A directory holding ``model.onnx``; the ``.onnx`` file itself; a SparseZoo stub
        (``"zoo:..."``, downloaded by sparsezoo: needs internet); or an existing DeepSparse
        text-classification ``Pipeline``, whose compiled engine and tokenizer are reused (its
        batch size and sequence length then apply).
    batch_size : int, optional
        Batch size the engines are compiled for (default 32). Smaller final batches are padded.
    num_cores : int, optional
        Physical cores the engine uses (``None``: all of them). Per engine, not process-wide.
    sequence_length : int, default 128
        The longest input, in tokens: longer inputs are truncated to it (with a warning), so set
        it to at least the longest input the model should see in full. It is also the largest
        bucket.
    buckets : sequence of int or None, default (12, 40, 64, 128)
        Static lengths to compile engines for, each on first use; a batch goes to the smallest
        bucket that holds its longest text. The default skips 13-32 tokens, a range DeepSparse
        1.8 ran about 2x slower per token (1.6-2.9x) on the machine we measured;
        :meth:`tune_buckets` picks buckets from timings on yours. Lengths above ``sequence_length`` are dropped and
        ``sequence_length`` is added. ``None``: one engine, every input padded to
        ``sequence_length`` (compiled at construction).
    sort_by_length : bool, default True
        Cut each call into batches in order of token length (then restore the input order), so
        that short texts share small buckets. ``False`` batches in input order.
    tokenizer : path or tokenizer, optional
        Overrides the tokenizer in the model directory.
    classes : sequence of str, optional
        Overrides ``id2label`` from ``config.json``.
    name : str, optional

    Examples
    --------
    >>> p = DeepSparsePredictor("models/minilm-sst2-pruned80", batch_size=8,
    ...                         num_cores=2, sequence_length=64)  # doctest: +SKIP
    >>> p.predict(["a gorgeous, witty film"]).labels  # doctest: +SKIP
    array(['POSITIVE'], dtype=object)
    """

    def __init__(
        self,
        model: str | Path | Any,
        *,
        batch_size: int | None = None,
        num_cores: int | None = None,
        sequence_length: int = 128,
        buckets: Sequence[int] | None = DEFAULT_BUCKETS,
        sort_by_length: bool = True,
        tokenizer: Any = None,
        classes: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_cores is not None and num_cores < 1:
            raise ValueError(f"num_cores must be >= 1 or None, got {num_cores}")
        if sequence_length < 2:
            raise ValueError(f"sequence_length must be >= 2, got {sequence_length}")
        ds = import_deepsparse()
        self._ds = ds
        self.num_cores = num_cores
        self.sort_by_length = bool(sort_by_length)
        if _is_pipeline(model):
            self._init_from_pipeline(model, batch_size, tokenizer, classes, name)
            return
        if not isinstance(model, (str, Path)):
            raise TypeError(
                "model must be a model directory, an .onnx file, a 'zoo:' stub or a DeepSparse "
                f"Pipeline, got {type(model).__name__}"
            )
        if isinstance(model, str) and model.startswith("zoo:"):
            model_dir = _download_zoo(model)
            path = model_dir / "model.onnx"
        else:
            path, model_dir = onnx_file(model)
        self.name = name or f"deepsparse:{model_dir.name}"
        check_single_label(model_dir, self.name)
        self.batch_size = int(batch_size or 32)
        self.sequence_length = int(sequence_length)
        self.max_length = self.sequence_length
        self.model_path: Path | None = path
        self.buckets = _buckets(buckets, self.sequence_length)
        self._input_names = _checked_inputs(path)
        self._engines: dict[int, Any] = {}
        if len(self.buckets) == 1:
            self._engine_for(self.sequence_length)  # one static shape: compile now, as before
        self.encoder = TextEncoder(
            tokenizer if tokenizer is not None else model_dir,
            max_length=self.sequence_length,
            pad_to=self.sequence_length if len(self.buckets) == 1 else None,
            source=self.name,
        )
        if classes is None:
            classes = model_classes(model_dir)
        self.classes = None if classes is None else tuple(str(c) for c in classes)

    @property
    def engine(self) -> Any:
        """The engine of the largest bucket (compiled on first access)."""
        return self._engine_for(self.buckets[-1])

    def _engine_for(self, length: int) -> Any:
        """The engine compiled for ``length`` tokens, compiling it on first use."""
        engine = self._engines.get(length)
        if engine is None:
            assert self.model_path is not None and self.batch_size is not None
            engine = _compile_copy(self._ds, self.model_path, self.batch_size, length, self.num_cores)
            self._engines[length] = engine
        return engine

    def _init_from_pipeline(
        self, pipeline: Any, batch_size: int | None, tokenizer: Any, classes: Any, name: str | None
    ) -> None:
        engine = pipeline.engine
        engine_batch = int(getattr(engine, "batch_size", None) or getattr(pipeline, "_batch_size", 1) or 1)
        if batch_size is not None and batch_size != engine_batch:
            raise ValueError(
                f"the pipeline's engine is compiled for batch_size={engine_batch}, not {batch_size}; "
                "leave batch_size unset or create the pipeline with the batch size you want"
            )
        seq = pipeline.sequence_length
        if not isinstance(seq, int):
            raise ValueError(f"pipelines with several sequence lengths (buckets, {seq}) are not supported")
        self.name = name or "deepsparse:pipeline"
        self.batch_size = engine_batch
        self.sequence_length = seq
        self.max_length = seq
        self.model_path = None
        self.buckets = (seq,)
        self._engines = {seq: engine}
        self._input_names = list(getattr(pipeline, "onnx_input_names", None) or _TEXT_INPUTS)
        self.encoder = TextEncoder(
            tokenizer if tokenizer is not None else pipeline.tokenizer,
            max_length=seq,
            pad_to=seq,
            source=self.name,
        )
        if classes is None:
            classes = classes_from_id2label(getattr(pipeline.config, "id2label", None), self.name)
        self.classes = None if classes is None else tuple(str(c) for c in classes)

    def bucket_for(self, n_tokens: int) -> int:
        """The smallest bucket that holds ``n_tokens`` tokens (the largest one if none does)."""
        for b in self.buckets:
            if n_tokens <= b:
                return b
        return self.buckets[-1]

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits for at most ``batch_size`` texts (or :class:`TokenizedTexts`), shape (n, k)."""
        tokens = self.encoder.tokenize(check_texts(texts, self.name))
        n, size = len(tokens), int(self.batch_size or 1)
        if n > size:
            raise ValueError(f"{self.name}: got {n} texts for an engine compiled for {size}")
        width = self.bucket_for(int(tokens.lengths.max(initial=1)))
        batch = self.encoder.pad(tokens, width).pad_rows(size)
        engine = self._engine_for(width)
        outputs = engine.run([batch.arrays[k] for k in self._input_names])
        return np.asarray(outputs[_logits_index(engine)])[:n]

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        return Predictions.from_logits(self.predict_logits(inputs), self.classes, source=self.name)

    def time_buckets(self, lengths: Sequence[int] | None = None, *, repeats: int = 3) -> dict[int, float]:
        """Measured seconds per batch of the engine for each sequence length, on this machine.

        Compiles (or reuses) one engine per length at this predictor's ``batch_size`` and
        ``num_cores``, runs it once to warm up and then ``repeats`` times on a full batch of
        dummy token ids, and returns the median time of one batch. DeepSparse picks its kernels
        per static shape, and the time does not follow the token count: measured here
        (DeepSparse 1.8, AVX-512 VNNI, one core, batch 32) engines for 13 to 32 tokens ran on a
        path about 2x slower per token (1.6-2.9x) than those for 12 or 36 and more, so a
        32-token engine was slower than a 64-token one (docs/backends.md). :meth:`tune_buckets` uses these times.

        Parameters
        ----------
        lengths : sequence of int, optional
            Sequence lengths to time (each >= 2 and <= ``sequence_length``); default: this
            predictor's buckets.
        repeats : int, default 3

        Returns
        -------
        dict
            ``{length: seconds per batch}``, in increasing length.
        """
        if self.model_path is None:
            raise ValueError(f"{self.name}: a predictor built from a Pipeline has one fixed shape; nothing to time")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        wanted = sorted({int(n) for n in (self.buckets if lengths is None else lengths)})
        bad = [n for n in wanted if n < 2 or n > self.sequence_length]
        if bad:
            raise ValueError(
                f"lengths {bad} are outside 2..sequence_length={self.sequence_length}; "
                "raise sequence_length to time longer engines"
            )
        times = {}
        for length in wanted:
            engine = self._engines.get(length)
            if engine is None:
                assert self.batch_size is not None
                engine = _compile_copy(self._ds, self.model_path, self.batch_size, length, self.num_cores)
            feed = _dummy_feed(self, length)
            engine.run(feed)  # warm-up
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                engine.run(feed)
                runs.append(time.perf_counter() - start)
            times[length] = float(np.median(runs))
            if length in self.buckets:
                self._engines[length] = engine  # a bucket's engine is kept, not compiled again
        return times

    def tune_buckets(
        self, candidates: Sequence[int] = TUNING_CANDIDATES, *, repeats: int = 3, min_gain: float = 0.1
    ) -> dict[int, float]:
        """Keep only the buckets that are measurably faster than every longer one, on this machine.

        Times one engine per candidate length with :meth:`time_buckets` (one compilation each, a
        few seconds for MiniLM) and sets :attr:`buckets` to the candidates whose batch is at
        least ``min_gain`` faster than that of every longer bucket kept (``sequence_length``
        is always kept). A batch then goes to the shortest kept bucket that holds it, so a
        length the engine runs slowly is never used. The kept buckets' engines are reused.

        Parameters
        ----------
        candidates : sequence of int, default (8, 12, 16, 24, 32, 40, 48, 64, 96)
            Lengths to try; those at or above ``sequence_length`` are dropped.
        repeats : int, default 3
        min_gain : float, default 0.1
            Relative time a shorter bucket must save to be kept (guards against timing noise).

        Returns
        -------
        dict
            ``{length: seconds per batch}`` for every candidate timed.

        Examples
        --------
        >>> p = DeepSparsePredictor("models/minilm-sst2-pruned80", num_cores=1, sequence_length=64)  # doctest: +SKIP
        >>> p.tune_buckets()  # doctest: +SKIP
        {8: 0.041, 12: 0.070, 16: 0.225, 24: 0.230, 32: 0.339, 40: 0.207, 48: 0.236, 64: 0.306}
        >>> p.buckets  # doctest: +SKIP
        (8, 12, 40, 48, 64)
        """
        if not 0 <= min_gain < 1:
            raise ValueError(f"min_gain must be in [0, 1), got {min_gain}")
        lengths = _buckets(candidates, self.sequence_length)
        old = self.buckets
        self.buckets = lengths  # so that time_buckets keeps every candidate's engine for now
        try:
            times = self.time_buckets(lengths, repeats=repeats)
        except BaseException:
            self.buckets = old
            raise
        self.buckets = keep_faster_buckets(times, min_gain)
        for length in set(old) | set(lengths):
            if length not in self.buckets:
                self._engines.pop(length, None)
        return times

    def __repr__(self) -> str:
        return (
            f"DeepSparsePredictor(name={self.name!r}, batch_size={self.batch_size}, "
            f"num_cores={self.num_cores}, sequence_length={self.sequence_length}, "
            f"buckets={self.buckets}, sort_by_length={self.sort_by_length})"
        )


def keep_faster_buckets(seconds_per_batch: dict[int, float], min_gain: float = 0.1) -> tuple[int, ...]:
    """The lengths worth a bucket: each at least ``min_gain`` faster than every longer one kept.

    Walks from the longest length (always kept) down; a shorter length is kept when its time
    per batch is below ``(1 - min_gain)`` times the fastest longer length kept, since a batch
    that fits it also fits those.

    >>> keep_faster_buckets({12: 0.074, 16: 0.227, 32: 0.400, 40: 0.229, 64: 0.309})
    (12, 40, 64)
    """
    if not seconds_per_batch:
        raise ValueError("no lengths were timed")
    kept: list[int] = []
    best = float("inf")
    for length in sorted(seconds_per_batch, reverse=True):
        t = seconds_per_batch[length]
        if not kept or t < (1 - min_gain) * best:
            kept.append(length)
            best = min(best, t)
    return tuple(sorted(kept))


def _dummy_feed(predictor: DeepSparsePredictor, length: int) -> list[np.ndarray]:
    """A full batch of rows of exactly ``length`` real tokens of the model's vocabulary, for timing."""
    sample = predictor.encoder.tokenize(["a gorgeous, witty, seductive movie."])
    ids, type_ids = sample.ids[0], sample.type_ids[0]
    body = [ids[1 + i % max(len(ids) - 2, 1)] for i in range(length - 2)]  # the words, repeated
    row = TokenizedTexts([""], [[ids[0], *body, ids[-1]]], [[type_ids[0]] * length], [False])
    arrays = predictor.encoder.pad(row, length).pad_rows(int(predictor.batch_size or 1)).arrays
    return [arrays[name] for name in predictor._input_names]


def _is_pipeline(model: Any) -> bool:
    return hasattr(model, "engine") and hasattr(model, "tokenizer") and hasattr(model, "sequence_length")


def _logits_index(engine: Any) -> int:
    names = list(getattr(engine, "output_names", None) or [])
    return names.index("logits") if "logits" in names else 0


def _graph_io(path: Path) -> tuple[list[str], list[str]]:
    """(graph input names that are not initializers, external-data files), read without the weights."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    files: set[str] = set()
    for t in graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            files.update(e.value for e in t.external_data if e.key == "location")
    return inputs, sorted(files)


def _buckets(buckets: Sequence[int] | None, sequence_length: int) -> tuple[int, ...]:
    """Sorted bucket lengths up to ``sequence_length``, which is always the last one."""
    if buckets is None:
        return (sequence_length,)
    values = [int(b) for b in buckets]
    bad = [b for b in values if b < 2]
    if bad:
        raise ValueError(f"bucket lengths must be >= 2 tokens, got {bad}")
    return tuple(sorted({b for b in values if b < sequence_length} | {sequence_length}))


def _checked_inputs(path: Path) -> list[str]:
    """The graph's text inputs, refusing any other input."""
    input_names, _ = _graph_io(path)
    unknown = set(input_names) - set(_TEXT_INPUTS)
    if unknown:
        raise ValueError(
            f"{path}: model inputs {sorted(unknown)} are not text-classifier inputs "
            "(expected input_ids, attention_mask, token_type_ids)"
        )
    return input_names


def _compile_copy(ds: Any, path: Path, batch_size: int, sequence_length: int, num_cores: int | None) -> Any:
    """Compile a private copy of ``path`` with static shapes; the user's file is only read."""
    input_names, external = _graph_io(path)
    with tempfile.TemporaryDirectory(prefix="confroute-deepsparse-") as tmp:
        copy = Path(tmp) / "model.onnx"
        shutil.copyfile(path, copy)
        for rel in external:
            target = Path(tmp) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path.parent / rel, target)
        engine = ds.compile_model(
            str(copy),
            batch_size=batch_size,
            num_cores=num_cores,
            input_shapes=[[batch_size, sequence_length] for _ in input_names],
        )
    # The compiled engine no longer needs the file, so the copy is gone as soon as it is built.
    return engine


def _download_zoo(stub: str) -> Path:
    try:
        from sparsezoo import Model
    except ImportError:
        raise ImportError(
            "SparseZoo stubs need sparsezoo (installed with deepsparse): pip install 'confroute[deepsparse]'"
        ) from None
    deployment = Path(Model(stub).deployment.path)
    if not (deployment / "model.onnx").is_file():
        raise FileNotFoundError(f"SparseZoo deployment for {stub} has no model.onnx ({deployment})")
    return deployment
