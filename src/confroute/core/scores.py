"""Confidence scores: how sure a stage is of its own answer, one number per input.

Every built-in score lies in ``[0, 1]`` and is larger when the stage is more confident, so one
threshold convention holds everywhere: an input is *accepted* when ``score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .types import Predictions

__all__ = [
    "max_prob",
    "margin",
    "neg_entropy",
    "score_name",
    "SCORES",
    "PredictionScore",
    "resolve_score",
    "score_range",
]

ScoreFn = Callable[[Predictions, Sequence[Any]], np.ndarray]


def max_prob(probs: np.ndarray) -> np.ndarray:
    """Largest class probability (the softmax response of Geifman & El-Yaniv 2017).

    Examples
    --------
    >>> max_prob(np.array([[0.9, 0.1], [0.5, 0.5]])).tolist()
    [0.9, 0.5]
    """
    return np.asarray(probs, dtype=np.float64).max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability.

    Examples
    --------
    >>> margin(np.array([[0.7, 0.2, 0.1]])).round(6).tolist()
    [0.5]
    """
    p = np.asarray(probs, dtype=np.float64)
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def neg_entropy(probs: np.ndarray) -> np.ndarray:
    """One minus the entropy normalised by ``log(k)``: 1 for a one-hot row, 0 for uniform.

    Examples
    --------
    >>> neg_entropy(np.array([[1.0, 0.0], [0.5, 0.5]])).round(6).tolist()
    [1.0, 0.0]
    """
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return np.clip(1.0 - h / np.log(k), 0.0, 1.0)


#: Built-in scores by name.
SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "max_prob": max_prob,
    "margin": margin,
    "neg_entropy": neg_entropy,
}


@runtime_checkable
class PredictionScore(Protocol):
    """A score that needs more than the probabilities (a learned judge, say).

    It sees the stage's full :class:`Predictions` and the raw inputs.
    """

    def score_predictions(self, predictions: Predictions, inputs: Sequence[Any]) -> np.ndarray: ...


def resolve_score(score: str | Callable[..., Any] | PredictionScore) -> ScoreFn:
    """Turn a score name, a ``probs -> scores`` callable or a :class:`PredictionScore` into one
    function ``(predictions, inputs) -> scores``."""
    if isinstance(score, str):
        try:
            fn = SCORES[score]
        except KeyError:
            raise ValueError(f"unknown score {score!r}; choose one of {sorted(SCORES)} or pass a callable") from None
        return lambda preds, inputs: fn(preds.probs)
    if isinstance(score, PredictionScore):
        return score.score_predictions
    if callable(score):
        return lambda preds, inputs: score(preds.probs)
    raise TypeError(f"score must be a name, a callable or a PredictionScore, got {type(score).__name__}")


def score_name(score: Any) -> str:
    """How a score is named in tables and reports: its keyword, or its function's name.

    >>> score_name("margin"), score_name(max_prob)
    ('margin', 'max_prob')
    """
    if isinstance(score, str):
        return score
    return getattr(score, "__name__", None) or type(score).__name__


def score_range(score: Any) -> tuple[float, float] | None:
    """The closed range a score's values lie in, when known (built-ins: ``(0, 1)``)."""
    if isinstance(score, str) and score in SCORES:
        return (0.0, 1.0)
    return getattr(score, "score_range", None)


def checked_scores(values: Any, n: int, where: str) -> np.ndarray:
    """Validate the output of a score function: ``n`` finite floats."""
    s = np.asarray(values, dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"{where}: score returned shape {s.shape}, expected ({n},)")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise ValueError(f"{where}: score is not finite for input {int(bad[0])} ({s[bad[0]]})")
    return s
