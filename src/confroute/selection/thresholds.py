"""Deprecated home of ``choose_threshold``; use :func:`confroute.choose_thresholds`.

The two-stage procedures live in :mod:`confroute.selection.two_stage`, the choice type in
:mod:`confroute.selection.choices`. ``choose_threshold`` warns and runs exactly what
:func:`~confroute.choose_thresholds` runs (same default procedure, same answer); it also takes
scores and correctness arrays instead of an evaluation.
"""

from __future__ import annotations

from typing import Any

from ..core._deprecation import deprecated_alias
from ..core.cost import CostModel
from ..evaluation.evaluate import Evaluation
from ..exceptions import ThresholdWarning
from .bounds import clopper_pearson  # moved to bounds.py; still importable from here
from .choices import ThresholdChoice
from .choose import choose_two_stage
from .objectives import given_objective

__all__ = ["choose_threshold", "ThresholdChoice", "clopper_pearson", "ThresholdWarning"]


def _choose_threshold(
    data: Evaluation | Any,
    correct: Any = None,
    *,
    fallback_correct: Any = None,
    delta: float | None = 0.05,
    cost_model: Any = None,
    n_starts: int | None = None,
    rule: str = "loosest",
    correction: str = "auto",
    method: str | None = None,
    bound: str = "cp_losses",
    **targets: float | None,
) -> ThresholdChoice:
    objective, target = given_objective(targets)
    if isinstance(data, Evaluation):
        if correct is not None or fallback_correct is not None:
            raise ValueError("with an Evaluation, do not pass correct / fallback_correct")
        if data.n_stages != 2:
            raise ValueError(f"a single threshold is for two stages; this evaluation has {data.n_stages}")
        cm = CostModel.coerce(cost_model, 2) if cost_model is not None else data.cost_model
        scores, correct = data.stage_scores[0], data.correct[0]
        fallback_correct = data.correct[-1] if data.last_known else None
    else:
        if correct is None:
            raise ValueError("give an Evaluation, or scores with correct=...")
        cm = CostModel.coerce(cost_model, 2)
        scores = data
    return choose_two_stage(
        scores, correct, fallback_correct, cm, objective=objective, target=target, delta=delta,
        correction=correction, method=method, n_starts=n_starts, rule=rule, bound=bound,
    )


#: Deprecated: :func:`confroute.choose_thresholds` (the same procedure and the same answer).
choose_threshold = deprecated_alias(_choose_threshold, "choose_threshold", "choose_thresholds")
