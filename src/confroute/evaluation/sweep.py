"""The two-stage threshold sweep: every distinct threshold at once, in O(n log n).

One walk along :func:`confroute.core.decision.threshold_path` (the library's one "sort the
scores, group ties, count along the path") and cumulative sums give, for every candidate
threshold of the first stage, how many inputs it accepts, how many of those it gets right, how
many the whole system gets right and what it costs. Costs come from the
:class:`~confroute.CostModel` alone (:meth:`~confroute.CostModel.answered_by`).

:func:`pareto_front` keeps the rows no other row beats on both cost and accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..calibration import metrics
from ..core import decision
from ..core._deprecation import renamed_attribute
from ..core.cost import CostModel

__all__ = ["Sweep", "threshold_sweep", "pareto_front"]


@dataclass(frozen=True)
class Sweep:
    """Counts at every distinct threshold, strictest first (row 0 accepts nothing).

    Attributes
    ----------
    n : int
    row_thresholds : ndarray of float, shape (d + 1,)
        The first stage's threshold of each row (with the rule ``score >= t``: ``+inf``, then the
        distinct scores, descending).
    n_accepted : ndarray of int
        Inputs the first stage accepts at each row.
    primary_correct : ndarray of int
        Correct primary answers among the accepted inputs.
    system_correct : ndarray of int or None
        Correct answers of the whole system (primary on accepted, fallback on deferred).
    cost : ndarray of float or None
        Total cost of the ``n`` inputs at each row.
    baseline_cost : float or None
        Cost of sending every input to the fallback alone.
    order : ndarray of int
        The permutation that sorts the scores in decreasing order (reused for AURC).
    """

    n: int
    row_thresholds: np.ndarray
    n_accepted: np.ndarray
    primary_correct: np.ndarray
    system_correct: np.ndarray | None = None
    cost: np.ndarray | None = None
    baseline_cost: float | None = None
    order: np.ndarray | None = field(default=None, repr=False)

    thresholds = renamed_attribute("row_thresholds")  # deprecated name (goes in 0.3)

    @property
    def n_errors(self) -> np.ndarray:
        """Primary errors among the accepted inputs."""
        return self.n_accepted - self.primary_correct


def _sweep_cost_model(
    cost_model: Any, primary_cost: Any, fallback_cost: Any, n: int
) -> CostModel | None:
    if (primary_cost is None) != (fallback_cost is None):
        raise ValueError("give both primary_cost and fallback_cost, or neither")
    if primary_cost is not None:
        if cost_model is not None:
            raise ValueError("give cost_model or primary_cost/fallback_cost, not both")
        return CostModel.from_input_prices([primary_cost, fallback_cost], n)
    return CostModel.coerce(cost_model, 2)


def threshold_sweep(
    scores: Any,
    primary_correct: Any,
    fallback_correct: Any = None,
    *,
    primary_cost: Any = None,
    fallback_cost: Any = None,
    cost_model: Any = None,
) -> Sweep:
    """Accepted counts, correct counts and cost at every distinct threshold, in O(n log n).

    Parameters
    ----------
    scores : array of shape (n,)
        Primary confidence; accepted by :func:`confroute.core.decision.accepts`
        (``score >= threshold``). NaN is an error.
    primary_correct : array of bool, shape (n,)
    fallback_correct : array of bool, shape (n,), optional
        Whether the fallback (or the rest of a cascade) is right on each input.
    primary_cost, fallback_cost : float or array of shape (n,), optional
        Price of each input at each stage (give both or neither); shorthand for
        ``cost_model=CostModel.from_input_prices([primary_cost, fallback_cost], n)``.
    cost_model : CostModel or sequence of two prices, optional
        The prices; every cost is read from :meth:`CostModel.per_input
        <confroute.CostModel.per_input>`.

    Returns
    -------
    Sweep

    Examples
    --------
    >>> sw = threshold_sweep([0.9, 0.6, 0.6, 0.2], [True, True, False, False],
    ...                      [True, True, True, False], primary_cost=1.0, fallback_cost=5.0)
    >>> sw.row_thresholds.tolist(), sw.n_accepted.tolist(), sw.primary_correct.tolist()
    ([inf, 0.9, 0.6, 0.2], [0, 1, 3, 4], [0, 1, 2, 2])
    >>> sw.system_correct.tolist(), sw.cost.tolist()
    ([3, 3, 2, 2], [24.0, 19.0, 9.0, 4.0])
    """
    s = metrics.check_scores(scores, "scores")
    n = s.shape[0]
    pc = metrics.check_correct(primary_correct, n, "primary_correct")
    fc = None if fallback_correct is None else metrics.check_correct(fallback_correct, n, "fallback_correct")
    cm = _sweep_cost_model(cost_model, primary_cost, fallback_cost, n)

    row_thresholds, order, ends = decision.threshold_path(s)

    def along(x: np.ndarray) -> np.ndarray:  # sum of x over the inputs accepted at each row
        return np.r_[0, np.cumsum(x[order])][ends]

    n_accepted = ends.astype(np.int64)
    primary_ok = along(pc.astype(np.int64))
    system_ok = None
    if fc is not None:
        fc_int = fc.astype(np.int64)
        system_ok = primary_ok + (int(fc_int.sum()) - along(fc_int))

    cost = baseline = None
    if cm is not None:
        answered_by = cm.answered_by(n)  # (2, n): each input's cost if accepted, if deferred
        all_deferred = float(answered_by[1].sum())
        cost = all_deferred - along(answered_by[1] - answered_by[0])
        baseline = cm.baseline(n)
    return Sweep(n, row_thresholds, n_accepted, primary_ok, system_ok, cost, baseline, order)


def pareto_front(cost: Any, accuracy: Any) -> np.ndarray:
    """Indices of the points no other point beats on both cost (lower) and accuracy (higher).

    Returned in order of increasing cost (and so increasing accuracy).

    Examples
    --------
    >>> pareto_front([1, 2, 3, 4], [0.8, 0.7, 0.9, 0.9]).tolist()
    [0, 2]
    """
    c = np.asarray(cost, dtype=np.float64)
    a = np.asarray(accuracy, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(c) & np.isfinite(a))
    # Cheapest first; among equal costs the most accurate first, so it is the one kept.
    order = ok[np.lexsort((-a[ok], c[ok]))]
    best_before = np.r_[-np.inf, np.maximum.accumulate(a[order])[:-1]]
    return order[a[order] > best_before]
