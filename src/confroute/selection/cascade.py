"""Joint threshold search for cascades of three or more stages: the procedure behind
:func:`confroute.choose_thresholds` for cascades.

Exhaustive over the grid of an :class:`~confroute.evaluation.evaluate.Evaluation` (exact on the
grid; ``G^(N-1)`` evaluations: 441 for three stages at ``G = 21``, 9,261 for four) or cyclic
coordinate descent (one stage's threshold at a time, all its ``G`` values in one vectorised pass,
until nothing improves: about ``rounds x (N-1) x G`` evaluations, a local optimum).

References
----------
Clopper & Pearson (1934); Bonferroni correction over the grid for the guarantee. Hoeffding (1963)
for the cost bound.
"""

from __future__ import annotations

import math

import numpy as np

from ..core._params import DELTA
from ..core.cost import CostModel
from ..evaluation.evaluate import Evaluation, best_row
from ..evaluation.table import table_from_counts
from ..evaluation.grid import cascade_counts
from .bounds import clopper_pearson
from .certificate import EXCHANGEABLE
from .choices import CascadeChoice
from .infeasible import warn_infeasible
from .objectives import OBJECTIVES
from .two_stage import answer_prices

__all__ = ["CascadeChoice", "choose_cascade"]


def _bounds(
    table: dict[str, np.ndarray], n: int, cost_model: CostModel | None, level: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row lower bound on accuracy and upper bound on cost per input (or the empirical
    figures when ``level`` is None)."""
    acc = table["system_accuracy"]
    cost = table["cost_per_input"]
    if level is None:
        return acc, cost
    errors = n - table["n_correct"]
    acc_lo = 1.0 - clopper_pearson(errors, np.full(errors.shape, n), level, "upper")
    if cost_model is None:
        return acc_lo, cost
    # Per-input cost lies between the cheapest and the dearest answer: Hoeffding.
    prices = answer_prices(cost_model)
    spread = float(prices.max() - prices.min())
    cost_hi = cost + spread * math.sqrt(math.log(1.0 / level) / (2.0 * n))
    return acc_lo, cost_hi


def choose_cascade(
    data: Evaluation,
    *,
    target_system_accuracy: float | None = None,
    max_cost_per_input: float | None = None,
    delta: float | None = 0.05,
    method: str = "exhaustive",
    max_rounds: int = 10,
) -> CascadeChoice:
    """Choose all thresholds of a cascade jointly, over the grid of an :class:`Evaluation`.

    Objectives (give exactly one):

    ``target_system_accuracy``
        The cheapest tuple whose system accuracy is at least the target.
    ``max_cost_per_input``
        The most accurate tuple whose mean cost per input is within the budget.

    Parameters
    ----------
    data : Evaluation
        From :func:`~confroute.evaluate` on calibration data (not on what you report).
    target_system_accuracy, max_cost_per_input : float
    delta : float or None, default 0.05
        With a number, the constraint must hold with probability ``1 - delta`` on new data from
        the same distribution: the accuracy constraint uses the Clopper–Pearson lower bound on
        system accuracy (``n`` trials), the budget uses a Hoeffding upper bound on the mean cost
        (per-input cost lies between the first stage's price and the sum of all prices), both at
        level ``delta / n_candidates`` (Bonferroni over every tuple of the grid, so the bound
        holds whichever tuple the search picks; the grid's quantiles come from the same data, a
        mild dependence we accept, as Learn-then-Test does for data-driven grids). ``None``:
        purely empirical.
    method : {"exhaustive", "coordinate"}
        ``"exhaustive"`` checks every tuple (``G^(N-1)``; exact on the grid).
        ``"coordinate"`` runs cyclic coordinate descent from the safe end (everything to the
        last stage for an accuracy target, everything answered by stage 1 for a budget),
        re-optimising one stage's threshold at a time over its whole grid, for at most
        ``max_rounds`` rounds: ``O(rounds x N x G)`` evaluations, a local optimum that stays
        feasible whenever the start is.
    max_rounds : int, default 10

    Returns
    -------
    CascadeChoice
        When nothing is feasible, a :class:`~confroute.exceptions.ThresholdWarning` is issued,
        ``feasible`` is False and the safe end is returned (the most accurate tuple for an
        accuracy target, the cheapest for a budget).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> n = 2000
    >>> y = rng.integers(0, 2, n)
    >>> def stage(noise):  # a noisier stage is less accurate and less confident
    ...     p = 1 / (1 + np.exp(-(2 * y - 1) * 3 + rng.normal(0, noise, n)))
    ...     return np.c_[1 - p, p]
    >>> from confroute import evaluate
    >>> res = evaluate(labels=y, stages=[stage(6), stage(4), stage(1)],
    ...                cost_model=[1.0, 3.0, 20.0], grid=15)
    >>> c = choose_cascade(res, target_system_accuracy=0.9, delta=0.05)
    >>> c.feasible, c.accuracy_bound >= 0.9, c.cost_per_input < 20
    (True, True, True)
    >>> cd = choose_cascade(res, target_system_accuracy=0.9, method="coordinate")
    >>> cd.feasible, cd.n_evaluated < c.n_evaluated, cd.cost_per_input >= c.cost_per_input
    (True, True, True)
    """
    if (target_system_accuracy is None) == (max_cost_per_input is None):
        raise ValueError("give exactly one of target_system_accuracy, max_cost_per_input")
    if target_system_accuracy is not None:
        target_system_accuracy = OBJECTIVES["target_system_accuracy"].check_target(target_system_accuracy)
    else:
        max_cost_per_input = OBJECTIVES["max_cost_per_input"].check_target(max_cost_per_input)
    DELTA.check(delta, "delta")
    if data.n == 0:
        raise ValueError("choosing thresholds needs at least one calibration input")
    if max_cost_per_input is not None and not data.has_cost:
        raise ValueError("max_cost_per_input needs stage prices (cost_model)")
    n_candidates = int(np.prod([g.size for g in data.grids]))
    level = None if delta is None else delta / n_candidates
    cost_model = data.cost_model

    if method == "exhaustive":
        if data.n_rows != n_candidates:
            raise ValueError("exhaustive search needs the full table: evaluate(..., table=True), "
                             "or use method='coordinate'")
        table = data.table
        bounds = _bounds(table, data.n, cost_model, level)
        row = best_row(table, target_system_accuracy, max_cost_per_input, bounds)
        n_eval = n_candidates
    elif method == "coordinate":
        table, bounds, row, n_eval = _coordinate(data, target_system_accuracy, max_cost_per_input,
                                                 level, max_rounds)
    else:
        raise ValueError(f"method must be 'exhaustive' or 'coordinate', got {method!r}")

    feasible = row >= 0
    r = row if feasible else -1 - row
    objective = OBJECTIVES["target_system_accuracy" if target_system_accuracy is not None else "max_cost_per_input"].name
    target = float(target_system_accuracy if target_system_accuracy is not None else max_cost_per_input)  # type: ignore[arg-type]
    if not feasible:
        warn_infeasible(
            f"no threshold tuple meets the {objective.replace('_', ' ')} target {target:g}"
            + ("" if delta is None else f" with probability {1 - delta:g}")
            + f" on {data.n} inputs; returning the safe end"
        )
    accuracy_bound = math.nan if level is None else float(bounds[0][r])
    cost_bound = math.nan if level is None or cost_model is None else float(bounds[1][r])
    guaranteed = accuracy_bound if objective == "system_accuracy" else cost_bound
    shares = tuple(float(v) for v in table["shares"][r])
    return CascadeChoice(
        thresholds=[float(t) for t in table["thresholds"][r]],
        objective=objective,
        target=target,
        delta=delta,
        feasible=feasible,
        method=method,
        n_evaluated=int(n_eval),
        n_candidates=int(n_candidates),
        system_accuracy=float(table["system_accuracy"][r]),
        cost_per_input=float(table["cost_per_input"][r]),
        savings=float(table["savings"][r]),
        accuracy_bound=accuracy_bound,
        cost_bound=cost_bound,
        shares=shares,
        guaranteed=guaranteed if feasible else math.nan,
        procedure=("empirical" if level is None else "bonferroni_grid") + f"_{method}",
        coverage=1.0 - shares[-1],
        assumption="" if level is None else EXCHANGEABLE,
    )


def _coordinate(
    data: Evaluation, target_acc: float | None, budget: float | None, level: float | None,
    max_rounds: int,
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray], int, int]:
    """Cyclic coordinate descent over grid indices; returns a one-row table of the result."""
    grids = data.grids
    # Safe start: accept nothing anywhere (accuracy target) or accept everything at stage 1.
    if target_acc is not None:
        idx = [0] * len(grids)  # grids are strictest first
    else:
        idx = [g.size - 1 for g in grids]
    scores, correct = list(data.stage_scores), list(data.correct)
    n_eval = 0

    def evaluate_line(s: int) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        line = [g[[i]] for g, i in zip(grids, idx)]
        line[s] = grids[s]
        answered, ok = cascade_counts(scores, correct, line)
        table = table_from_counts(_product(line), answered, ok, data.n, data.cost_model, True)
        return table, _bounds(table, data.n, data.cost_model, level)

    for _ in range(max(1, max_rounds)):
        changed = False
        for s in range(len(grids)):
            table, bounds = evaluate_line(s)
            n_eval += grids[s].size
            row = best_row(table, target_acc, budget, bounds)
            pick = row if row >= 0 else -1 - row
            if pick != idx[s]:
                # Move only when it is strictly better than staying, so the search terminates.
                if _better(table, bounds, pick, idx[s], target_acc, budget):
                    idx[s] = pick
                    changed = True
        if not changed:
            break
    final_grid = [g[[i]] for g, i in zip(grids, idx)]
    answered, ok = cascade_counts(scores, correct, final_grid)
    table = table_from_counts(_product(final_grid), answered, ok, data.n, data.cost_model, True)
    bounds = _bounds(table, data.n, data.cost_model, level)
    row = best_row(table, target_acc, budget, bounds)
    return table, bounds, row, n_eval


def _product(grids: list[np.ndarray]) -> np.ndarray:
    import itertools

    return np.array(list(itertools.product(*grids)), dtype=np.float64).reshape(-1, len(grids))


def _better(
    table: dict[str, np.ndarray], bounds: tuple[np.ndarray, np.ndarray], a: int, b: int,
    target_acc: float | None, budget: float | None,
) -> bool:
    """Is row ``a`` strictly better than row ``b`` for the objective (feasibility first)?"""
    acc, cost = table["system_accuracy"], table["cost_per_input"]
    acc_b, cost_b = bounds
    if target_acc is not None:
        if np.isnan(cost).all():
            cost = -(table["shares"] * np.arange(table["shares"].shape[1], 0, -1)).sum(axis=1)
        fa, fb = acc_b[a] >= target_acc - 1e-12, acc_b[b] >= target_acc - 1e-12
        if fa != fb:
            return bool(fa)
        if not fa:
            return bool(acc[a] > acc[b])
        return bool(cost[a] < cost[b] or (cost[a] == cost[b] and acc[a] > acc[b]))
    assert budget is not None
    fa, fb = cost_b[a] <= budget + 1e-12, cost_b[b] <= budget + 1e-12
    if fa != fb:
        return bool(fa)
    if not fa:
        return bool(cost[a] < cost[b])
    return bool(acc[a] > acc[b] or (acc[a] == acc[b] and cost[a] < cost[b]))

