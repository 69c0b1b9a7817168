"""The prompt and the class-code rule shared by the LLM predictors (one home for both).

An LLM stage asks a model for a short *code* per class (a letter, a word) and reads the
probability of each code from the distribution of the **first answer token**:

* a token *matches* a class when the token, stripped of surrounding whitespace, is a non-empty
  prefix of that class's code and of no other class's code (so ``"A"`` and ``" A"`` both count
  for code ``"A"``; a code the tokenizer splits, ``"positive"`` -> ``"pos"`` + ``"itive"``, is
  matched by its first token);
* a class's probability is the sum over its matching tokens; the class probabilities are then
  renormalised over the classes, and the mass outside them (``1 - sum``) is recorded;
* a remote server shows only its ``top_logprobs`` tokens: a class none of whose tokens is listed
  gets the largest probability it could have (the smaller of the lowest listed token's
  probability and the unlisted mass), which can only lower the confidence; when **no** class is
  listed the input is a :class:`~confroute.exceptions.PredictionError` (never a uniform guess).

:class:`~confroute.predictors.openai.OpenAIPredictor` and
:class:`~confroute.predictors.causal_lm.HFCausalLMPredictor` both use :class:`LLMPrompt`, so the
same model sees the same text and is scored by the same rule.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.types import PredictionError

__all__ = ["LLMPrompt", "ClassScores", "class_scores", "match_class", "codes_starting_with", "check_usage", "DEFAULT_TEMPLATE", "TokenUsage",
           "LLMCall"]

DEFAULT_TEMPLATE = (
    "Classify the text into one of these classes: {choices}.\n"
    "Text: {input}\n"
    "Answer with the class code only."
)


@dataclass(frozen=True)
class TokenUsage:
    """Token counts of one input's call (``usage.prompt_tokens`` / ``completion_tokens``)."""

    prompt_tokens: int
    completion_tokens: int
    cached: bool = False


@dataclass(frozen=True)
class LLMCall:
    """What one input's answer cost and how much of it fell on the classes.

    ``class_mass``: the probability of the first answer token being one of the class codes (the
    rest, ``1 - class_mass``, went to other tokens); ``cached``: the answer came from the cache
    (the usage is that of the original call).
    """

    prompt_tokens: int
    completion_tokens: int
    class_mass: float
    cached: bool = False


@dataclass(frozen=True)
class ClassScores:
    """Class log-probabilities of one answer, before renormalisation, and the mass outside."""

    logprobs: np.ndarray
    class_mass: float

    @property
    def outside_mass(self) -> float:
        return max(0.0, 1.0 - self.class_mass)


def match_class(token: str, codes: Sequence[str], case_sensitive: bool = True) -> int | None:
    """The class a first answer token stands for, or None (the rule in the module docstring).

    Examples
    --------
    >>> match_class(" A", ["A", "B"]), match_class("pos", ["positive", "negative"]), match_class("x", ["A", "B"])
    (0, 0, None)
    >>> match_class("p", ["pos", "pun"]) is None  # a prefix of two codes stands for neither
    True
    """
    hits = codes_starting_with(token, codes, case_sensitive)
    return hits[0] if len(hits) == 1 else None


def codes_starting_with(token: str, codes: Sequence[str], case_sensitive: bool = True) -> list[int]:
    """The classes whose code starts with ``token`` (stripped; none for a blank token).

    Examples
    --------
    >>> codes_starting_with(" negative", ["negative one", "negative two"])
    [0, 1]
    """
    t = token.strip()
    if not t:
        return []
    if not case_sensitive:
        t = t.lower()
        codes = [c.lower() for c in codes]
    return [i for i, c in enumerate(codes) if c.startswith(t)]


def class_scores(
    top: Sequence[tuple[str, float]], codes: Sequence[str], case_sensitive: bool = True, source: str = "llm"
) -> ClassScores:
    """Class log-probabilities from the ``(token, logprob)`` pairs a server listed.

    Examples
    --------
    >>> s = class_scores([(" A", math.log(0.6)), ("A", math.log(0.1)), ("B", math.log(0.2))], ["A", "B"])
    >>> np.round(np.exp(s.logprobs), 3).tolist(), round(s.class_mass, 3)
    ([0.7, 0.2], 0.9)
    """
    k = len(codes)
    if top:
        best = max(top, key=lambda pair: float(pair[1]))[0]
        shared = codes_starting_with(best, codes, case_sensitive)
        if len(shared) > 1:  # the answer's first token starts several codes: it cannot tell them apart
            raise PredictionError(
                f"{source}: the class codes {[codes[i] for i in shared]} collide in the server's tokenizer: "
                f"its most likely answer token {best!r} starts each of them, so the first token cannot "
                "tell the classes apart; use codes whose first tokens differ (e.g. 'A', 'B', ...)"
            )
    mass = np.zeros(k)
    seen: set[str] = set()
    listed = 0.0
    lowest = 1.0
    for token, logprob in top:
        if token in seen:  # some servers repeat a token; count it once
            continue
        seen.add(token)
        p = math.exp(float(logprob))
        listed += p
        lowest = min(lowest, p)
        i = match_class(token, codes, case_sensitive)
        if i is not None:
            mass[i] += p
    if not (mass > 0).any():
        shown = ", ".join(repr(t) for t, _ in list(top)[:5])
        raise PredictionError(
            f"{source}: no class code {list(codes)} is among the {len(seen)} top answer tokens "
            f"({shown}{', ...' if len(seen) > 5 else ''}); ask for more top_logprobs, constrain the "
            "output (logit_bias) or reword the prompt"
        )
    bound = max(min(lowest, 1.0 - listed), 1e-12)  # an unlisted class's token has at most this
    class_mass = float(mass.sum())
    mass[mass == 0] = bound
    return ClassScores(np.log(mass), class_mass)


@dataclass(frozen=True)
class LLMPrompt:
    """What an LLM stage asks: the template, the classes and one code per class.

    Parameters
    ----------
    classes : sequence
        Class values in column order (the user's own labels).
    codes : sequence of str, optional
        The answer the model gives for each class, in the same order (default: ``str(class)``).
        Short codes that are single tokens (``"A"``, ``"yes"``) score best.
    template : str
        Must hold the input slot ``{input}``; may hold ``{choices}`` (the codes, and the classes
        when they differ: ``"A (negative), B (positive)"``) and ``{codes}``.
    system : str, optional
        A system message (chat) or a preamble (plain completion).
    case_sensitive : bool, default True
        Whether ``"a"`` counts for code ``"A"``.

    Examples
    --------
    >>> p = LLMPrompt(["neg", "pos"], codes=["A", "B"], template="Sentiment of: {input}\\nA or B?")
    >>> p.render("great film")
    'Sentiment of: great film\\nA or B?'
    >>> LLMPrompt(["neg", "pos"], template="no slot")
    Traceback (most recent call last):
    ...
    ValueError: the prompt template has no input slot '{input}': 'no slot'
    """

    classes: tuple[Any, ...]
    codes: tuple[str, ...] | None = None
    template: str = DEFAULT_TEMPLATE
    system: str | None = None
    case_sensitive: bool = True
    _fields: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        classes = tuple(self.classes)
        if len(classes) < 2:
            raise ValueError(f"an LLM stage needs at least 2 classes, got {classes!r}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes must be distinct, got {classes!r}")
        codes = tuple(str(c) for c in classes) if self.codes is None else tuple(self.codes)
        if len(codes) != len(classes):
            raise ValueError(f"need one code per class: {len(classes)} classes, {len(codes)} codes")
        for c in codes:
            if not isinstance(c, str) or not c.strip() or c != c.strip():
                raise ValueError(f"class codes must be non-empty strings without surrounding spaces, got {c!r}")
        folded = codes if self.case_sensitive else tuple(c.lower() for c in codes)
        for i, a in enumerate(folded):
            for j, b in enumerate(folded):
                if i != j and b.startswith(a):
                    raise ValueError(
                        f"class code {codes[i]!r} is a prefix of {codes[j]!r}: the first answer token cannot "
                        "tell them apart; choose codes that differ in their first letters"
                    )
        if not isinstance(self.template, str):
            raise TypeError(f"template must be a str, got {type(self.template).__name__}")
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        except ValueError as exc:
            raise ValueError(f"the prompt template is not a valid format string ({exc}): {self.template!r}") from None
        if "input" not in names:
            raise ValueError(f"the prompt template has no input slot '{{input}}': {self.template!r}")
        unknown = names - {"input", "choices", "codes"}
        if unknown:
            raise ValueError(
                f"the prompt template has unknown slots {sorted(unknown)}; use {{input}}, {{choices}}, {{codes}} "
                "(write {{ and }} for literal braces)"
            )
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "_fields", frozenset(names))

    @property
    def choices(self) -> str:
        codes = self.codes or ()
        if list(codes) == [str(c) for c in self.classes]:
            return ", ".join(codes)
        return ", ".join(f"{c} ({k})" for c, k in zip(codes, self.classes))

    def render(self, text: str) -> str:
        """The user message (or completion prompt) for one input."""
        if not isinstance(text, str):
            raise TypeError(f"LLM inputs must be str, got {type(text).__name__}")
        return self.template.format(input=text, choices=self.choices, codes=", ".join(self.codes or ()))

    def messages(self, text: str) -> list[dict[str, str]]:
        """The chat messages for one input."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        return out + [{"role": "user", "content": self.render(text)}]

    def scores(self, top: Sequence[tuple[str, float]], source: str = "llm") -> ClassScores:
        return class_scores(top, self.codes or (), self.case_sensitive, source)

    def to_dict(self) -> dict[str, Any]:
        """The fields that decide a model's answer (part of a cache key)."""
        return {"classes": [str(c) for c in self.classes], "codes": list(self.codes or ()),
                "template": self.template, "system": self.system, "case_sensitive": self.case_sensitive}


def check_usage(usage: Mapping[str, Any] | None) -> TokenUsage | None:
    """``usage`` of an OpenAI-style answer as :class:`TokenUsage` (None when the server sent none)."""
    if not isinstance(usage, Mapping):
        return None
    try:
        return TokenUsage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    except (TypeError, ValueError):
        return None
