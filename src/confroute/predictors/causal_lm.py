"""A local Hugging Face causal LM as a classifier stage: the same prompt as an API stage.

:class:`HFCausalLMPredictor` renders the prompt of :class:`~confroute.predictors._llm_prompt.LLMPrompt`
(through the tokenizer's chat template, as a chat server does), batches with left padding and
reads the next-token distribution at the last position. A class's probability is the total
probability of the vocabulary tokens that match its code (the rule of ``_llm_prompt``: the whole
vocabulary here, the top tokens on a server), renormalised over the classes. It loads GGUF files
too (``gguf_file=...``, through transformers' GGUF support: ``pip install gguf accelerate``), so it
scores exactly the model a llama.cpp server serves, and is the reference the remote stage is
compared with.

Requires ``transformers`` and ``torch`` (``pip install 'confroute[hf-llm]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.types import PredictionError, Predictions
from ._llm_prompt import DEFAULT_TEMPLATE, LLMCall, LLMPrompt, match_class
from ._text import check_texts
from .base import Predictor

__all__ = ["HFCausalLMPredictor"]


def _import_torch_transformers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise ImportError("HFCausalLMPredictor needs torch and transformers: pip install 'confroute[hf-llm]'") from None
    return torch, transformers


class HFCausalLMPredictor(Predictor):
    """Class probabilities from a local causal LM's next-token logits over the class codes.

    Parameters
    ----------
    model : str or path or PreTrainedModel
        A hub id or folder (with ``gguf_file``: the folder holding the GGUF file), or a loaded model
        (then give ``tokenizer``).
    classes, codes, template, system, case_sensitive
        As for :class:`~confroute.predictors.openai.OpenAIPredictor` (one :class:`LLMPrompt`).
    chat : bool, default True
        Render the prompt with the tokenizer's chat template (as ``/v1/chat/completions`` does);
        ``False``: the plain prompt (as ``/v1/completions``).
    gguf_file : str, optional
        Name of a GGUF file inside ``model`` (de-quantised to ``dtype`` on load).
    tokenizer : tokenizer, optional
    device : str, default "cpu"
    dtype : str, default "float32"
    batch_size : int, default 8
    max_length : int, optional
        Truncate prompts to this many tokens (from the left: the answer cue at the end stays).
    add_bos : bool, optional
        Start a plain (``chat=False``) prompt with the BOS token. Default: what the GGUF file says
        (``tokenizer.ggml.add_bos_token``, as llama.cpp does), else the tokenizer's own default.
        A rendered chat template holds its special tokens already: no BOS is added to it.
    top_k : int or None, default 20
        Score from the model's ``top_k`` most likely first tokens, exactly as a server's
        ``top_logprobs`` are scored (the same function; an input with no class among them is a
        :class:`~confroute.exceptions.PredictionError`), so the local and the remote stage agree.
        ``None``: sum over every matching token of the vocabulary.
    name : str, optional

    Attributes
    ----------
    calls : dict
        ``{input text: LLMCall}`` with the prompt's token count and the mass on the class codes.
    class_token_ids : list of ndarray
        The vocabulary ids that count for each class.
    """

    input_kind: str | None = "text"

    # long: one validated parameter per line
    def __init__(
        self,
        model: Any,
        classes: Sequence[Any],
        *,
        codes: Sequence[str] | None = None,
        template: str = DEFAULT_TEMPLATE,
        system: str | None = None,
        chat: bool = True,
        gguf_file: str | None = None,
        tokenizer: Any = None,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 8,
        max_length: int | None = None,
        add_bos: bool | None = None,
        top_k: int | None = 20,
        case_sensitive: bool = True,
        name: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.prompt = LLMPrompt(tuple(classes), None if codes is None else tuple(codes), template, system, case_sensitive)
        self.classes = self.prompt.classes
        torch, transformers = _import_torch_transformers()
        if add_bos is None and gguf_file is not None and isinstance(model, (str, os.PathLike)):
            add_bos = _gguf_add_bos(os.path.join(os.fspath(model), gguf_file))
        if isinstance(model, (str, os.PathLike)):
            kwargs: dict[str, Any] = {} if gguf_file is None else {"gguf_file": gguf_file}
            if tokenizer is None:
                tokenizer = transformers.AutoTokenizer.from_pretrained(model, **kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype), **kwargs)
            label = str(gguf_file or model.name_or_path)
        else:
            if tokenizer is None:
                raise ValueError("give tokenizer= with a loaded model")
            label = str(getattr(model, "name_or_path", type(model).__name__))
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.chat = bool(chat)
        self.batch_size = int(batch_size)
        self.max_length = max_length
        self.add_bos = add_bos
        if top_k is not None and int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        self.top_k = None if top_k is None else int(top_k)
        self.name = name or f"causal-lm:{os.path.basename(label)}"
        self.calls: dict[str, LLMCall] = {}
        if self.chat and not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{self.name}: the tokenizer has no chat template; pass chat=False for a plain prompt")
        self._check_codes()
        self._class_token_ids: list[np.ndarray] | None = None

    @property
    def class_token_ids(self) -> list[np.ndarray]:
        """The vocabulary ids that count for each class (computed on first use)."""
        if self._class_token_ids is None:
            self._class_token_ids = self._class_tokens()
        return self._class_token_ids

    def _check_codes(self) -> None:
        """Each code's own first token must stand for its class (with or without a leading space)."""
        tok = self.tokenizer
        codes = list(self.prompt.codes or ())
        for i, code in enumerate(codes):
            for variant in (code, " " + code):
                ids = tok.encode(variant, add_special_tokens=False)
                first = tok.decode(ids[:1]) if ids else ""
                owner = match_class(first, codes, self.prompt.case_sensitive)
                if owner != i:
                    others = [c for c in codes if c != code and c.startswith(first.strip())]
                    raise ValueError(
                        f"{self.name}: class codes collide in the tokenizer: {variant!r} starts with the token "
                        f"{first!r}, which is also the start of {others or 'no code'}; the first answer token "
                        "cannot tell the classes apart: choose codes whose first tokens differ (e.g. 'A', 'B')"
                    )

    def _class_tokens(self) -> list[np.ndarray]:
        tok = self.tokenizer
        codes = list(self.prompt.codes or ())
        vocab = len(tok)
        owners = np.full(vocab, -1)
        for token_id in range(vocab):
            text = tok.decode([token_id])
            owner = match_class(text, codes, self.prompt.case_sensitive)
            if owner is not None:
                owners[token_id] = owner
        found = [np.flatnonzero(owners == i) for i in range(len(codes))]
        for code, ids in zip(codes, found):
            if not len(ids):
                raise ValueError(f"{self.name}: no token of the vocabulary starts class code {code!r}")
        return found

    def render(self, text: str) -> str:
        """The exact text the model reads for one input."""
        if self.chat:
            return str(self.tokenizer.apply_chat_template(self.prompt.messages(text), tokenize=False,
                                                          add_generation_prompt=True))
        p = self.prompt.render(text)
        return f"{self.prompt.system}\n{p}" if self.prompt.system else p

    def encode(self, texts: list[str]) -> list[list[int]]:
        """The token ids the model reads for each input (what a server counts as prompt tokens)."""
        # a rendered chat template holds its special tokens already (a server adds no BOS either)
        if self.chat or self.add_bos is not None:
            bos = self.tokenizer.bos_token_id
            head = [bos] if not self.chat and self.add_bos and bos is not None else []
            out = [head + self.tokenizer.encode(self.render(t), add_special_tokens=False) for t in texts]
        else:
            out = [self.tokenizer.encode(self.render(t)) for t in texts]
        if self.max_length is not None:
            out = [ids[-self.max_length:] for ids in out]
        return out

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        torch, _ = _import_torch_transformers()
        texts = check_texts(inputs, self.name)
        encoded = self.encode(texts)
        width = max(len(ids) for ids in encoded)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id or 0
        ids = torch.full((len(encoded), width), int(pad), dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, seq in enumerate(encoded):  # left padding: every prompt ends at the last position
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                             position_ids=positions.to(self.device), logits_to_keep=1)
            logprobs = torch.log_softmax(out.logits[:, -1, :].double(), dim=-1).cpu()
        scores, mass = self._scores(torch, logprobs)
        for text, seq, m in zip(texts, encoded, mass):
            self.calls[text] = LLMCall(len(seq), 1, float(m), False)
        return Predictions.from_logits(scores, self.classes, source=self.name)

    def usage(self, inputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokens per input (``nan`` for an input never scored), as a server would count them, for
        a :class:`~confroute.TokenPrice` stage (a local model priced like the API it stands for)."""
        got = [self.calls.get(text) for text in inputs]
        return {"prompt_tokens": np.array([np.nan if c is None else c.prompt_tokens for c in got], dtype=np.float64),
                "completion_tokens": np.array([np.nan if c is None else c.completion_tokens for c in got],
                                              dtype=np.float64)}

    def _scores(self, torch: Any, logprobs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Class log-masses and the mass on the classes, per row."""
        if self.top_k is None:
            scores = np.empty((logprobs.shape[0], len(self.class_token_ids)))
            for c, token_ids in enumerate(self.class_token_ids):
                scores[:, c] = torch.logsumexp(logprobs[:, torch.as_tensor(token_ids)], dim=-1).numpy()
            return scores, np.exp(scores).sum(axis=1)
        values, ids = torch.topk(logprobs, self.top_k, dim=-1)
        rows, masses, failed = [], [], []
        for i, (v, t) in enumerate(zip(values.tolist(), ids.tolist())):
            top = [(self.tokenizer.decode([token]), lp) for token, lp in zip(t, v)]
            try:
                s = self.prompt.scores(top, self.name)
            except PredictionError as exc:
                failed.append((i, exc))
                continue
            rows.append(s.logprobs)
            masses.append(s.class_mass)
        if failed:
            raise PredictionError(f"rows {[i for i, _ in failed]} of {len(values)}: {failed[0][1]}")
        return np.vstack(rows), np.asarray(masses)

    def __repr__(self) -> str:
        return f"HFCausalLMPredictor(name={self.name!r}, classes={self.classes!r}, codes={self.prompt.codes!r})"


def _gguf_add_bos(path: str) -> bool | None:
    """``tokenizer.ggml.add_bos_token`` of a GGUF file (None when absent or unreadable)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    try:
        field = GGUFReader(path).fields.get("tokenizer.ggml.add_bos_token")
    except (OSError, ValueError):
        return None
    if field is None or not field.data:
        return None
    return bool(field.parts[field.data[0]][0])
