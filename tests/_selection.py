"""Evaluations made from scores and correctness, so tests reach the one selection path."""

from __future__ import annotations

from typing import Any

import numpy as np

from confroute import choose_thresholds, evaluate


def evaluation_of(scores: Any, correct: Any, fallback_correct: Any = None, cost_model: Any = None) -> Any:
    """An :class:`~confroute.Evaluation` whose primary has these scores and is right where
    ``correct`` says (and a fallback right where ``fallback_correct`` says)."""
    correct = np.asarray(correct, dtype=bool)
    n = correct.shape[0]
    fallback = None if fallback_correct is None else np.where(np.asarray(fallback_correct, bool), 0, 1)
    return evaluate(labels=np.zeros(n, int), primary=np.where(correct, 0, 1), scores=np.asarray(scores, float),
                    fallback=fallback, cost_model=cost_model)


def choose(scores: Any, correct: Any, fallback_correct: Any = None, *, cost_model: Any = None, **kwargs: Any) -> Any:
    """:func:`confroute.choose_thresholds` on :func:`evaluation_of` those arrays."""
    return choose_thresholds(evaluation_of(scores, correct, fallback_correct, cost_model), **kwargs)
