"""Text checking, model-directory reading and tokenisation shared by the ONNX backends.

DeepSparse and ONNX Runtime both run a bare ONNX graph, so confroute has to do what a Hugging Face
pipeline does around the model: read the class names from ``config.json``, tokenise, truncate and
pad. Doing it in one place is what makes the backends agree to float precision: the same token ids
reach every runtime.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "check_texts",
    "model_classes",
    "default_max_length",
    "TextEncoder",
    "EncodedBatch",
    "TokenizedTexts",
    "length_order",
    "onnx_file",
    "is_multi_label",
    "TextInputsMixin",
]

#: Tokeniser configs that set no real limit store this huge sentinel as ``model_max_length``.
_NO_LIMIT = 10**6


def check_texts(inputs: Sequence[Any], source: str) -> list[str]:
    """Return ``inputs`` as a list of ``str``, or raise naming the first bad position.

    Parameters
    ----------
    inputs : sequence
        One batch of texts.
    source : str
        Predictor name, used in the error message.

    Returns
    -------
    list of str

    Examples
    --------
    >>> check_texts(["a", "b"], "demo")
    ['a', 'b']
    >>> check_texts(["a", None], "demo")
    Traceback (most recent call last):
    ...
    TypeError: demo: input 1 is None; every input must be a str
    """
    if isinstance(inputs, TokenizedTexts):
        return inputs  # type: ignore[return-value]  # checked when it was built
    texts = list(inputs)
    for i, t in enumerate(texts):
        if isinstance(t, str):
            continue
        if isinstance(t, np.str_):
            texts[i] = str(t)
            continue
        what = "None" if t is None else f"a {type(t).__name__} ({t!r:.60})"
        raise TypeError(f"{source}: input {i} is {what}; every input must be a str")
    return texts


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def model_classes(model_dir: str | Path) -> tuple[str, ...] | None:
    """Class names in logit column order, from ``id2label`` in ``model_dir/config.json``.

    Returns ``None`` when the directory has no config or the config names no labels.
    ``id2label`` keys are column indices; they must be exactly ``0..k-1``.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "config.json").write_text(json.dumps({"id2label": {"1": "pos", "0": "neg"}}))
    >>> model_classes(d)
    ('neg', 'pos')
    """
    config = _read_json(Path(model_dir) / "config.json")
    return classes_from_id2label(config.get("id2label"), source=str(model_dir))


def classes_from_id2label(id2label: Any, source: str) -> tuple[str, ...] | None:
    """Order ``id2label`` (keys ``int`` or ``str``) by column index; check it covers ``0..k-1``."""
    if not id2label:
        return None
    try:
        by_index = {int(k): str(v) for k, v in dict(id2label).items()}
    except (TypeError, ValueError):
        raise ValueError(f"{source}: id2label keys must be column indices, got {id2label!r}") from None
    k = len(by_index)
    if sorted(by_index) != list(range(k)):
        raise ValueError(f"{source}: id2label must name columns 0..{k - 1}, got keys {sorted(by_index)}")
    names = tuple(by_index[i] for i in range(k))
    if len(set(names)) != k:
        raise ValueError(f"{source}: id2label has duplicate class names {list(names)}")
    return names


def is_multi_label(config: dict[str, Any] | Any) -> bool:
    """True when a model config declares multi-label classification (sigmoid, not softmax)."""
    if isinstance(config, dict):
        return config.get("problem_type") == "multi_label_classification"
    problem = getattr(config, "problem_type", None)
    return problem == "multi_label_classification"


def check_single_label(model_dir: Path, source: str) -> None:
    """Refuse multi-label models: their outputs are independent sigmoids, not a distribution."""
    if is_multi_label(_read_json(model_dir / "config.json")):
        raise ValueError(
            f"{source}: {model_dir} is a multi-label model (problem_type='multi_label_classification'); "
            "confroute routes single-label classifiers whose classes form one softmax distribution"
        )


def default_max_length(model_dir: str | Path, fallback: int = 512) -> int:
    """The longest input the model accepts, in tokens.

    The smaller of the tokenizer's ``model_max_length`` (when it sets a real limit) and the
    config's ``max_position_embeddings``; ``fallback`` when neither says.
    """
    d = Path(model_dir)
    limits = []
    tok_max = _read_json(d / "tokenizer_config.json").get("model_max_length")
    if isinstance(tok_max, (int, float)) and 0 < tok_max < _NO_LIMIT:
        limits.append(int(tok_max))
    positions = _read_json(d / "config.json").get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else fallback


def onnx_file(model: str | Path) -> tuple[Path, Path]:
    """Resolve ``model`` (a directory holding ``model.onnx``, or an ``.onnx`` file) to (file, dir)."""
    p = Path(model).expanduser()
    if p.is_dir():
        f = p / "model.onnx"
        if not f.is_file():
            found = sorted(x.name for x in p.glob("*.onnx"))
            hint = f"; it has {found}: pass the file itself" if found else ""
            raise FileNotFoundError(f"{p} has no model.onnx{hint}")
        return f, p
    if p.is_file():
        if p.suffix != ".onnx":
            raise ValueError(f"{p} is not an .onnx file; pass a directory holding model.onnx or the file")
        return p, p.parent
    raise FileNotFoundError(f"no such model directory or .onnx file: {p}")


@dataclass(frozen=True)
class EncodedBatch:
    """Token arrays for one batch, padded to a common length.

    ``arrays`` maps model input names (``input_ids``, ``attention_mask``, ``token_type_ids``) to
    int64 arrays of shape (n, length). ``n_truncated`` counts inputs cut to ``max_length``.
    """

    arrays: dict[str, np.ndarray]
    n_truncated: int

    def __len__(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def pad_rows(self, n: int) -> EncodedBatch:
        """Append copies of the last row until the batch has ``n`` rows (for static batch sizes)."""
        extra = n - len(self)
        if extra <= 0:
            return self
        return EncodedBatch(
            {k: np.concatenate([v, np.repeat(v[-1:], extra, axis=0)]) for k, v in self.arrays.items()},
            self.n_truncated,
        )


class TokenizedTexts(Sequence[str]):
    """Texts together with their token ids, tokenised once.

    A sequence of the texts themselves (so it can stand wherever a batch of texts is expected);
    slicing or :meth:`take` keeps each text's tokens, so a predictor that receives a slice pads
    the stored ids instead of tokenising again.

    Examples
    --------
    >>> t = TokenizedTexts(["a b", "c"], [[1, 5, 6, 2], [1, 7, 2]], [[0] * 4, [0] * 3], [False, False])
    >>> t.lengths.tolist(), t[1], t[::-1].lengths.tolist()
    ([4, 3], 'c', [3, 4])
    """

    def __init__(
        self,
        texts: Sequence[str],
        ids: Sequence[Sequence[int]],
        type_ids: Sequence[Sequence[int]],
        truncated: Sequence[bool],
    ) -> None:
        if not len(texts) == len(ids) == len(type_ids) == len(truncated):
            raise ValueError("texts, ids, type_ids and truncated must have one entry per text")
        self.texts = list(texts)
        self.ids = list(ids)
        self.type_ids = list(type_ids)
        self.truncated = np.asarray(truncated, dtype=bool).reshape(-1)

    @property
    def lengths(self) -> np.ndarray:
        """Token count of each text (special tokens included, after truncation)."""
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return self.texts[index]
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        return self.take(np.asarray(index))

    def take(self, index: Any) -> TokenizedTexts:
        """The texts at ``index`` (integer positions), in that order, with their tokens."""
        idx = np.asarray(index, dtype=np.intp).reshape(-1)
        return TokenizedTexts(
            [self.texts[i] for i in idx],
            [self.ids[i] for i in idx],
            [self.type_ids[i] for i in idx],
            self.truncated[idx],
        )

    def __repr__(self) -> str:
        return f"TokenizedTexts(n={len(self)}, longest={int(self.lengths.max(initial=0))} tokens)"


def length_order(lengths: Any) -> np.ndarray:
    """Positions that sort ``lengths`` ascending; ties keep their input order.

    Cutting inputs sorted this way into mini-batches puts texts of similar length together, so
    little padding is computed; ``np.argsort(order)`` restores the input order afterwards.

    Examples
    --------
    >>> length_order([5, 2, 9, 2]).tolist()
    [1, 3, 0, 2]
    """
    return np.argsort(np.asarray(lengths, dtype=np.int64).reshape(-1), kind="stable")


class TextEncoder:
    """Tokenise texts the way the model was trained, truncate, and pad.

    Uses the fast ``tokenizers`` library on ``tokenizer.json`` when the directory has one (no
    ``transformers`` import, same ids as the Hugging Face fast tokenizer that wrote the file),
    else ``transformers.AutoTokenizer`` from the directory, offline. A ready tokenizer object
    (``tokenizers.Tokenizer`` or a ``transformers`` tokenizer) can be passed instead.

    :meth:`tokenize` and :meth:`pad` are the two halves of :meth:`encode`: predictors tokenise a
    whole call once (to sort it by length), then pad each mini-batch.

    Parameters
    ----------
    tokenizer : path or tokenizer
        Model directory, or a tokenizer object.
    max_length : int
        Inputs longer than this many tokens (special tokens included) are truncated, as the
        Hugging Face pipeline does with ``truncation=True``; a warning says how many.
    pad_to : int or None
        ``None`` pads each batch to its longest input; an int pads every batch to exactly this
        length (static shapes, which DeepSparse needs). Must be >= ``max_length`` when set.
    source : str
        Predictor name for messages.
    """

    def __init__(
        self, tokenizer: Any, *, max_length: int, pad_to: int | None = None, source: str = "predictor"
    ) -> None:
        if max_length < 2:
            raise ValueError(f"{source}: max_length must be >= 2 (room for special tokens), got {max_length}")
        if pad_to is not None and pad_to < max_length:
            raise ValueError(f"{source}: pad_to={pad_to} is shorter than max_length={max_length}")
        self.max_length = int(max_length)
        self.pad_to = pad_to
        self.source = source
        self._warned = False
        self._fast, self._hf, self.pad_id = _load_tokenizer(tokenizer, source)
        if self._fast is not None:
            # Padding is done here (to the batch or to pad_to); the file may carry its own settings.
            self._fast.no_padding()
            self._fast.enable_truncation(max_length=self.max_length)

    def tokenize(self, texts: Sequence[str]) -> TokenizedTexts:
        """Token ids of ``texts`` (already checked to be ``str``), truncated, not padded.

        Warns (once per encoder) when some inputs were longer than ``max_length``.
        """
        if isinstance(texts, TokenizedTexts):
            return texts
        if self._fast is not None:
            ids_list, types_list, truncated = self._encode_fast(texts)
        else:
            ids_list, types_list, truncated = self._encode_hf(texts)
        n_truncated = int(np.sum(truncated))
        if n_truncated and not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.source}: {n_truncated} input(s) were longer than max_length="
                f"{self.max_length} tokens and were truncated (warned once per predictor)",
                stacklevel=4,
            )
        return TokenizedTexts(list(texts), ids_list, types_list, truncated)

    def pad(self, tokens: TokenizedTexts, width: int | None = None) -> EncodedBatch:
        """Pad ``tokens`` into arrays ``width`` wide (default: ``pad_to``, else the longest row)."""
        n = len(tokens)
        longest = max((len(x) for x in tokens.ids), default=1)
        if width is None:
            width = self.pad_to if self.pad_to is not None else longest
        if width < longest:
            raise ValueError(f"{self.source}: cannot pad {longest} tokens into width {width}")
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for i, (row, trow) in enumerate(zip(tokens.ids, tokens.type_ids)):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            types[i, : len(trow)] = trow
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return EncodedBatch(arrays, int(tokens.truncated.sum()))

    def encode(self, texts: Sequence[str], width: int | None = None) -> EncodedBatch:
        """Token arrays for ``texts`` (already checked to be ``str``, or a :class:`TokenizedTexts`)."""
        return self.pad(self.tokenize(texts), width)

    def _encode_fast(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]], list[bool]]:
        encodings = self._fast.encode_batch(list(texts))
        truncated = [bool(e.overflowing) for e in encodings]
        return [e.ids for e in encodings], [e.type_ids for e in encodings], truncated

    def _encode_hf(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]], list[bool]]:
        full = self._hf(list(texts), truncation=False, padding=False, verbose=False)
        enc = self._hf(list(texts), truncation=True, max_length=self.max_length, padding=False)
        truncated = [len(a) > len(b) for a, b in zip(full["input_ids"], enc["input_ids"])]
        types = enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]
        return list(enc["input_ids"]), list(types), truncated


def _load_tokenizer(tokenizer: Any, source: str) -> tuple[Any, Any, int]:
    """Return (fast tokenizers.Tokenizer or None, transformers tokenizer or None, pad id)."""
    if isinstance(tokenizer, (str, Path)):
        d = Path(tokenizer).expanduser()
        if (d / "tokenizer.json").is_file():
            fast = _tokenizers().Tokenizer.from_file(str(d / "tokenizer.json"))
            return fast, None, _pad_id(fast, _read_json(d / "tokenizer_config.json"))
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise ImportError(
                f"{source}: {d} has no tokenizer.json, and reading other tokenizer formats needs "
                "transformers: pip install 'confroute[onnx]'"
            ) from None
        try:
            hf = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"{source}: no usable tokenizer in {d}: {exc}") from None
        return None, hf, int(hf.pad_token_id or 0)
    if type(tokenizer).__module__.startswith("tokenizers"):
        fast = tokenizer
        return fast, None, _pad_id(fast, {})
    if hasattr(tokenizer, "backend_tokenizer") and getattr(tokenizer, "is_fast", False):
        # A transformers fast tokenizer: use its Rust backend directly (a copy, so that setting
        # truncation here does not change the caller's object).
        fast = _tokenizers().Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        return fast, None, int(tokenizer.pad_token_id or 0)
    if callable(tokenizer) and hasattr(tokenizer, "pad_token_id"):
        return None, tokenizer, int(tokenizer.pad_token_id or 0)
    raise TypeError(
        f"{source}: tokenizer must be a model directory, a tokenizers.Tokenizer or a transformers "
        f"tokenizer, got {type(tokenizer).__name__}"
    )


def _pad_id(fast: Any, tok_config: dict[str, Any]) -> int:
    pad_token = tok_config.get("pad_token")
    if isinstance(pad_token, dict):
        pad_token = pad_token.get("content")
    if fast.padding and fast.padding.get("pad_id") is not None:
        return int(fast.padding["pad_id"])
    for token in (pad_token, "[PAD]", "<pad>"):
        if token and fast.token_to_id(token) is not None:
            return int(fast.token_to_id(token))
    return 0


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise ImportError(
            "the ONNX backends tokenise with the 'tokenizers' library: pip install 'confroute[onnx]'"
        ) from None
    return tokenizers


class TextInputsMixin:
    """Check a whole call's texts, tokenise them once, and sort them by length.

    Put it before :class:`~confroute.predictors.Predictor` in the bases. Errors name the
    position in the whole call, not in a mini-batch. When ``sort_by_length`` is true (the
    predictors' default), the texts are cut into mini-batches in order of token length, so each
    batch is padded to about its own texts' length, and the outputs are put back in input order.
    A predictor with an ``encoder`` (:class:`TextEncoder`) tokenises the call once and hands its
    batches :class:`TokenizedTexts`; others implement :meth:`_token_lengths`.
    """

    input_kind: str | None = "text"

    name: str
    sort_by_length: bool = False

    def _token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def _prepare(self, inputs: Sequence[Any]) -> tuple[Sequence[str], np.ndarray | None]:
        """(texts, or the texts tokenised once; the sorting order, or None for input order)."""
        from ..core.batch import as_batch

        texts: Sequence[str] = check_texts(as_batch(inputs), self.name)
        encoder = getattr(self, "encoder", None)
        if isinstance(encoder, TextEncoder):
            texts = encoder.tokenize(texts)
        if not self.sort_by_length or len(texts) < 2:
            return texts, None
        if isinstance(texts, TokenizedTexts):
            lengths = texts.lengths
        else:
            lengths = self._token_lengths(texts)
        order = length_order(lengths)
        if isinstance(texts, TokenizedTexts):
            return texts.take(order), order
        return [texts[i] for i in order], order

    def predict(self, inputs: Sequence[Any]) -> Any:
        texts, order = self._prepare(inputs)
        out = super().predict(texts)  # type: ignore[misc]
        return out if order is None else out.take(np.argsort(order))

    async def apredict(self, inputs: Sequence[Any]) -> Any:
        texts, order = self._prepare(inputs)
        out = await super().apredict(texts)  # type: ignore[misc]
        return out if order is None else out.take(np.argsort(order))
