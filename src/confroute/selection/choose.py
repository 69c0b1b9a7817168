"""The one entry point for choosing thresholds: :func:`choose_thresholds`.

Whatever the number of stages, global or per-class thresholds, with a finite-sample guarantee or
empirically, threshold selection starts here. The objective (one keyword of
:data:`~confroute.selection.objectives.OBJECTIVES`) says what is constrained, what it needs and
which certificate backs it; :func:`choose_thresholds` dispatches to the procedure that fits:

* two stages, one global threshold: :func:`confroute.selection.two_stage.select_threshold`
  (exact sweep over every distinct score; the fallback procedure for ``target_accuracy``,
  fixed-sequence Clopper–Pearson tests for system accuracy, the paired certificate for relative
  targets);
* two stages, one threshold per predicted class: :func:`confroute.selection.per_class.select_per_class`
  (Bonferroni over classes);
* three or more stages: :func:`confroute.selection.cascade.choose_cascade` (joint search over the
  evaluation's grid, Bonferroni over the grid).

Cross-fitting on the evaluation data itself (:func:`confroute.selection.crossfit.cross_fit_thresholds`)
calls :func:`choose_thresholds` on every fold, so a keyword means the same guarantee there too.

Every result is a :class:`~confroute.core.choice.Choice` with ``thresholds`` (one per non-last
stage), so it is accepted as it is by the routers: ``Cascade(stages, thresholds=choice)``,
``ThresholdRouter(primary, fallback, choice)``, ``router.thresholds = choice`` or
``router.with_thresholds(choice)``.
"""

from __future__ import annotations

from typing import Any

from ..core._params import DELTA, validate_params
from ..core.cost import CostModel
from ..evaluation.evaluate import Evaluation
from .cascade import choose_cascade
from .choices import CascadeChoice, PerClassChoice, ThresholdChoice
from .objectives import OBJECTIVES, Objective, objective_in
from .per_class import select_per_class
from .two_stage import default_method, select_threshold

__all__ = ["choose_thresholds", "choose_two_stage"]

_CORRECTIONS = ("auto", "fixed_sequence", "bonferroni", "none")


@validate_params({"delta": DELTA})
def choose_thresholds(
    evaluation: Evaluation,
    *,
    target_accuracy: float | None = None,
    target_system_accuracy: float | None = None,
    target_coverage: float | None = None,
    max_cost_per_input: float | None = None,
    min_savings: float | None = None,
    target_relative_accuracy: float | None = None,
    max_accuracy_drop: float | None = None,
    delta: float | None = 0.05,
    per_class: bool = False,
    correction: str = "auto",
    method: str | None = None,
    bound: str = "cp_losses",
    n_starts: int | None = None,
    rule: str = "loosest",
    max_rounds: int = 10,
    random_state: int | None = 0,
) -> ThresholdChoice | PerClassChoice | CascadeChoice:
    """Choose the routing thresholds of any cascade for one objective.

    Parameters
    ----------
    evaluation : Evaluation
        From :func:`~confroute.evaluate` on calibration data: data the models were not trained
        on and that you will not report test figures on.
    target_accuracy : float, optional
        Minimum accuracy of the first stage on the inputs it accepts (two stages).
    target_system_accuracy : float, optional
        Minimum accuracy of the whole system.
    target_coverage : float, optional
        Minimum share of inputs the first stage answers (two stages).
    max_cost_per_input : float, optional
        Budget: maximum mean cost per input (needs prices).
    min_savings : float, optional
        Minimum share saved against the last stage alone (two stages; needs prices).
    target_relative_accuracy : float, optional
        System accuracy at least this fraction of the last stage's own accuracy, certified with a
        *paired* bound that reads only the inputs where the stages disagree (two stages; see
        :mod:`confroute.selection.relative`).
    max_accuracy_drop : float, optional
        System accuracy at least the last stage's accuracy minus this (paired, two stages).
        With ``delta=None`` both relative targets are met on the calibration figures only.
    delta : float or None, default 0.05
        The target holds with probability at least ``1 - delta`` over the draw of the
        calibration data; ``None`` for a purely empirical choice (no guarantee).
    per_class : bool, default False
        One threshold per predicted class of the first stage, each class meeting
        ``target_accuracy`` (two stages).
    correction : {"auto", "fixed_sequence", "bonferroni", "none"}, default "auto"
        How the guarantee accounts for trying many thresholds. ``"auto"``: fixed-sequence
        testing for one global threshold of two stages, Bonferroni over the grid for cascades,
        Bonferroni over classes for per-class thresholds. ``"fixed_sequence"`` (two stages,
        global): test from strict to loose, stop at the first failure. ``"bonferroni"``: every
        candidate (or class) at ``delta / count``. ``"none"`` (per-class only): each class's
        guarantee on its own, not simultaneously.
    method : str, optional
        Cascades: ``"exhaustive"`` (default: every threshold tuple of the grid) or
        ``"coordinate"`` (cyclic coordinate descent). Two stages with ``target_accuracy``: the
        certification procedure, ``"fallback"`` (default: the fallback procedure, the best valid
        one in our simulations), ``"single"``, ``"multistart"``, ``"split"`` (Learn-then-Test)
        or ``"betting"`` (see :func:`confroute.selection.accepted.certify_accepted_accuracy`).
    bound : {"cp_losses", "conditional", "betting"}, default "cp_losses"
        The paired bound for ``target_relative_accuracy`` / ``max_accuracy_drop``.
    n_starts, rule
        Two stages, global: ``n_starts`` chains for ``method="multistart"``; ``rule`` (``"loosest"``
        or ``"first_failure"``) for an empirical (``delta=None``) accuracy target: see
        :func:`confroute.selection.two_stage.select_threshold`.
    max_rounds : int, default 10
        Cascades with ``method="coordinate"``.
    random_state : int or None, default 0
        Two stages, ``method="betting"``, ``bound="betting"`` or ``method="split"``: the seed of the
        random order the rows are read in (``None``: a fresh seed). The result does not depend on
        the order of the calibration rows; the seed is named in ``choice.assumption``.

    Returns
    -------
    ThresholdChoice, PerClassChoice or CascadeChoice
        Each has ``thresholds`` (one per non-last stage), ``feasible`` and the figures on the
        calibration data; pass it to a router as it is.

    Examples
    --------
    >>> import numpy as np
    >>> from confroute import ThresholdRouter, evaluate
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 4000)
    >>> p = np.clip(0.5 + (2 * y - 1) * rng.uniform(-0.2, 0.5, 4000), 0, 1)
    >>> res = evaluate(labels=y, primary=np.c_[1 - p, p], fallback=y, cost_model=[1.0, 10.0])
    >>> choice = choose_thresholds(res, target_accuracy=0.95, delta=0.05)
    >>> choice.feasible, choice.guaranteed >= 0.95
    (True, True)
    >>> router = ThresholdRouter(lambda xs: xs, lambda xs: xs, choice)
    >>> router.thresholds == choice.thresholds
    True
    """
    arguments = locals()
    if not isinstance(evaluation, Evaluation):
        raise TypeError(
            f"choose_thresholds takes an Evaluation (from confroute.evaluate), got {type(evaluation).__name__}"
        )
    if correction not in _CORRECTIONS:
        raise ValueError(f"correction must be one of {_CORRECTIONS}, got {correction!r}")
    objective, target = objective_in(arguments)
    if per_class:
        if evaluation.n_stages != 2 or not objective.per_class:
            raise ValueError("per_class=True chooses the first stage's thresholds of two stages for target_accuracy")
        if correction not in ("auto", "bonferroni", "none"):
            raise ValueError("per-class thresholds use correction='bonferroni' or 'none'")
        return select_per_class(
            evaluation, target_accuracy=target, delta=delta, n_starts=n_starts,
            correction="bonferroni" if correction == "auto" else correction,
        )
    if not objective.supports(evaluation.n_stages):
        cascade = [o.keyword for o in _cascade_objectives()]
        raise ValueError(f"for three or more stages give {' or '.join(cascade)}, got {objective.keyword}")
    if evaluation.n_stages > 2:
        if correction not in ("auto", "bonferroni"):
            raise ValueError("cascade thresholds are certified with correction='bonferroni' over the grid")
        return choose_cascade(evaluation, delta=delta, method=method or "exhaustive", max_rounds=max_rounds,
                              **{objective.keyword: target})
    fallback = evaluation.correct[-1] if evaluation.last_known else None
    return choose_two_stage(
        evaluation.stage_scores[0], evaluation.correct[0], fallback, evaluation.cost_model,
        objective=objective, target=target, delta=delta, correction=correction, method=method,
        n_starts=n_starts, rule=rule, bound=bound, random_state=random_state,
    )


def _cascade_objectives() -> list[Objective]:
    return [o for o in OBJECTIVES.values() if o.supports(3)]


def choose_two_stage(
    scores: Any, correct: Any, fallback_correct: Any, cost_model: CostModel | None, *, objective: Objective,
    target: float, delta: float | None, correction: str = "auto", method: str | None = None,
    n_starts: int | None = None, rule: str = "loosest", bound: str = "cp_losses", random_state: int | None = 0,
) -> ThresholdChoice:
    """:func:`choose_thresholds` for two stages, on arrays: the same defaults, the same procedure."""
    if correction == "none":
        raise ValueError("correction='none' applies to per-class thresholds only")
    method = default_method(objective, method, n_starts, delta, correction)
    return select_threshold(
        scores, correct, fallback_correct, objective=objective, target=target, delta=delta,
        cost_model=cost_model, n_starts=n_starts, rule=rule, method=method, bound=bound,
        correction="fixed_sequence" if correction == "auto" else correction, random_state=random_state,
    )
