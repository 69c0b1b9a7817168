"""Label budgets: how many inputs, and labels on their disagreements, certify a paired target.

With plenty of unlabelled traffic only the disagreements between the early stage and the
reference need a label; :func:`plan_labels` estimates how many inputs (and labels) certify a
target at a given coverage, from the disagreement and loss rates, and compares with the labels an
unpaired Clopper–Pearson bound would need.

Whether ``n`` inputs certify is not monotone in ``n``: the expected counts ``round(rate * n)``
jump by one at some sizes, and the bound fails again until ``n`` catches up (a saw-tooth: on
SST-2 dev's rates at 65% coverage it passes from 2,357, fails from 2,398, ...). So the planner
scans every ``n`` (vectorised, :func:`pass_points`) and reports both the smallest ``n`` that passes
and the ``n`` from which every larger one passes (up to the horizon it scanned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scipy.stats import binom

from .bounds import binomial_pvalue, clopper_pearson
from .certificate import REFERENCE_SHARE, jsonable
from .paired import paired_drop_upper

__all__ = ["LabelPlan", "plan_labels", "smallest_n", "pass_points", "paired_passes"]

#: Largest ``n`` the planner scans.
MOST = 10**7


@dataclass(frozen=True)
class LabelPlan:
    """How many inputs and labels a paired certificate needs at one coverage.

    Two assumptions about the reference's (the fallback's) accuracy, each with its own count:

    * **known** (``n_inputs``, ``n_inputs_always``, ``n_labels``): the reference's accuracy is
      known from elsewhere (passed as ``reference_lower=`` to the certificate), so only the
      disagreements need a label;
    * **estimated** from the same labels (``n_inputs_estimated``, ``n_inputs_estimated_always``,
      ``n_labels_estimated``): the certificate counts the reference's correct answers ``F``
      among the ``n`` inputs (``certify_relative_accuracy`` with ``stage_correct``), so every
      input needs a label.

    A difference target does not involve the reference's accuracy: both cases are the same.

    Attributes
    ----------
    n_inputs : int or None
        The smallest number of calibration inputs (unlabelled traffic) at which the expected
        counts certify (reference accuracy known); ``None`` when the rates cannot meet the target
        at any size (the loss rate is above ``epsilon``) or not within ``horizon``.
    n_inputs_always : int or None
        The size from which every larger size (up to ``horizon``) certifies: at least
        ``n_inputs``, larger when the pass/fail curve is a saw-tooth.
    n_labels : int or None
        Labels among ``n_inputs_always`` inputs when the reference's accuracy is known: the
        expected number of disagreements (``ceil(n_inputs_always * disagreement_rate)``).
    n_inputs_estimated, n_inputs_estimated_always, n_labels_estimated : int or None
        The same when the reference's accuracy is estimated from the same labels (every input
        labelled, so ``n_labels_estimated == n_inputs_estimated_always``).
    n_labels_unpaired : int or None
        Labels a Clopper–Pearson bound on the system's accuracy would need instead (every input
        labelled), at the same rates; ``None`` when it cannot reach the target.
    horizon : int
        The largest ``n`` scanned.
    assumption : str
        The two assumptions above, in words.
    """

    n_inputs: int | None
    n_labels: int | None
    n_labels_unpaired: int | None
    disagreement_rate: float
    loss_rate: float
    gain_rate: float
    epsilon: float
    kind: str
    delta: float
    bound: str
    n_inputs_always: int | None = None
    n_inputs_estimated: int | None = None
    n_inputs_estimated_always: int | None = None
    n_labels_estimated: int | None = None
    horizon: int = 0
    assumption: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable."""
        return {k: jsonable(v) for k, v in self.__dict__.items()}


def paired_passes(n: Any, rates: tuple[float, float, float], epsilon: float, kind: str, delta: float,
                  bound: str, reference: str = "estimated") -> np.ndarray:
    """Whether ``n`` inputs certify with counts at their expectations (``round(rate * n)``),
    for an array of sizes at once: the test of :func:`~confroute.selection.paired.select_paired`
    for one candidate (``reference="estimated"``: ``F = round(accuracy * n)`` as
    ``fallback_correct``; ``"known"``: the accuracy as ``reference_lower``). ``"betting"`` is
    planned as ``"cp_losses"`` (it has no closed form).

    Examples
    --------
    >>> paired_passes([1548, 1549, 1750, 1828, 1829], (0.002, 0.0, 1.0), 0.005, "difference", 0.05,
    ...               "cp_losses").tolist()
    [False, True, False, False, True]
    """
    n = np.asarray(n, dtype=np.float64)
    p_l, p_g, acc = rates
    L, G = np.round(p_l * n), np.round(p_g * n)
    if bound == "betting":
        bound = "cp_losses"
    if bound == "cp_losses":
        # Clopper–Pearson upper bound <= p0 iff the exact p-value P(Bin(m, p0) <= L) <= delta
        # (binomial_pvalue): the same test, thirty times faster over a long scan.
        if kind == "ratio" and reference == "estimated":
            return np.asarray(binomial_pvalue(L, np.round(acc * n), epsilon + 1e-15) <= delta)
        p0 = epsilon * (acc if kind == "ratio" else 1.0)
        return np.asarray(binomial_pvalue(L, n, p0 + 1e-15) <= delta)
    if kind == "difference":
        up = paired_drop_upper(L, G, n, delta, bound)
    elif reference == "known":
        up = paired_drop_upper(L, G, n, delta, bound) / max(acc, 1e-300)
    else:
        lb = clopper_pearson(np.round(acc * n), n, delta * REFERENCE_SHARE, "lower")
        up = paired_drop_upper(L, G, n, delta * (1 - REFERENCE_SHARE), bound) / np.maximum(lb, 1e-300)
    return np.asarray(up <= epsilon + 1e-15)


def pass_points(passes: Any, start: int = 1, most: int = MOST) -> tuple[int | None, int | None, int]:
    """The smallest ``n >= start`` that passes, the ``n`` from which every larger one passes, and
    the horizon scanned, by an exact scan (no bisection: passing need not be monotone in ``n``).

    ``passes`` takes an int array of sizes and returns a bool array. Sizes ``start, 2 start, 4
    start, ...`` are tried until one passes (``(None, None, most)`` when none up to ``most`` does);
    then every size from ``start`` to a horizon (at least twice that size) is checked, the horizon
    doubling until the last failure lies in the first half of the scanned range (``(first, None,
    most)`` when failures go on until ``most``).

    Examples
    --------
    >>> pass_points(lambda n: (n >= 10) & (n != 15))      # a saw-tooth: 10 passes, 15 does not
    (10, 16, 1024)
    """
    start = max(int(start), 1)
    hi = start
    while not bool(np.asarray(passes(np.array([hi])), dtype=bool)[0]):
        if hi >= most:
            return None, None, most
        hi = min(2 * hi, most)
    horizon = min(max(2 * hi, 1024), max(most, hi))
    while True:
        ns = np.arange(start, horizon + 1)
        ok = np.asarray(passes(ns), dtype=bool)
        first = int(ns[int(np.argmax(ok))])
        last_fail = int(ns[~ok].max()) if not ok.all() else start - 1
        if last_fail < start + (horizon - start) // 2:
            return first, last_fail + 1, horizon
        if horizon >= most:
            return first, None, horizon
        horizon = min(2 * horizon, most)


def smallest_n(passes: Any, start: int = 1, most: int = MOST) -> int | None:
    """Smallest ``n >= start`` with ``passes(n)`` (vectorised: an int array in, a bool array
    out), by the exact scan of :func:`pass_points`.

    Examples
    --------
    >>> smallest_n(lambda n: (n >= 10) & (n != 15))
    10
    """
    return pass_points(passes, start, most)[0]


def plan_labels(
    disagreement_rate: float, loss_rate: float, gain_rate: float = 0.0, *, epsilon: float,
    kind: str = "ratio", reference_accuracy: float | None = None, delta: float = 0.05,
    bound: str = "cp_losses",
) -> LabelPlan:
    """How many inputs, and labels on their disagreements, certify a paired target.

    The plan is for the typical draw: the sizes at which the bound passes when the counts equal
    their expectations (``round(rate * n)``), so about half of the draws at that size certify;
    ask for more to be safe. Rates are per input at the coverage of interest: the disagreement
    rate is known from unlabelled data; losses and gains come from a pilot, a previous
    certificate or an assumption. Every size is checked (no bisection), and both the smallest
    size that passes and the size from which every larger one passes are returned, for the
    reference's accuracy known (labels on disagreements only) and estimated from the same labels
    (every input labelled): see :class:`LabelPlan`.

    Parameters
    ----------
    disagreement_rate : float
        Share of inputs answered early on which the early stage and the reference disagree.
    loss_rate, gain_rate : float
        Shares of inputs that are losses (early wrong, reference right) and gains.
    epsilon : float
    kind : {"ratio", "difference"}
    reference_accuracy : float, optional
        The reference's accuracy (ratio targets).
    delta : float
    bound : {"cp_losses", "conditional", "betting"}
        ``"betting"`` is planned as ``"cp_losses"``.

    Returns
    -------
    LabelPlan
        With ``n_labels_unpaired``: the labels a Clopper–Pearson bound on the system accuracy of
        every (labelled) input needs for the same target at the same rates.

    Examples
    --------
    >>> p = plan_labels(0.02, 0.001, 0.01, epsilon=0.005, kind="ratio", reference_accuracy=0.9)
    >>> p.n_inputs, p.n_inputs_always, p.n_labels    # reference accuracy known: 22 labels
    (1053, 1053, 22)
    >>> p.n_inputs_estimated, p.n_labels_estimated, p.n_labels_unpaired   # estimated: all labelled
    (1052, 1052, 1480)
    """
    if kind == "ratio" and reference_accuracy is None:
        raise ValueError("a ratio target needs reference_accuracy= (the reference's accuracy)")
    if not 0 <= loss_rate <= disagreement_rate <= 1 or gain_rate < 0 or loss_rate + gain_rate > disagreement_rate + 1e-12:
        raise ValueError("need 0 <= loss_rate + gain_rate <= disagreement_rate <= 1")
    acc = 1.0 if reference_accuracy is None else float(reference_accuracy)
    rates = (loss_rate, gain_rate, acc)
    allowed = epsilon * (acc if kind == "ratio" else 1.0)
    feasible = loss_rate - (gain_rate if bound == "conditional" else 0.0) < allowed
    found: dict[str, tuple[int | None, int | None, int]] = {}
    for ref in ("known", "estimated"):
        found[ref] = (pass_points(lambda k, r=ref: paired_passes(k, rates, epsilon, kind, delta, bound, r))  # type: ignore[misc]
                      if feasible else (None, None, 0))
    (n, n_always, h1), (n_est, n_est_always, h2) = found["known"], found["estimated"]
    # Unpaired: Clopper–Pearson lower bound on system accuracy >= the target computed from the
    # reference's accuracy (as certified today), every input labelled.
    sys_acc = acc - loss_rate + gain_rate
    goal = acc * (1 - epsilon) if kind == "ratio" else acc - epsilon

    def unpaired(k: np.ndarray) -> np.ndarray:
        # clopper_pearson(c, k, delta, "lower") >= goal iff P(Bin(k, goal) >= c) <= delta
        return np.asarray(binom.sf(np.round(sys_acc * k) - 1, k, goal) <= delta)

    n_unpaired = pass_points(unpaired)[1] if sys_acc > goal else None
    return LabelPlan(
        n_inputs=n, n_labels=None if n_always is None else math.ceil(n_always * disagreement_rate),
        n_labels_unpaired=n_unpaired, disagreement_rate=disagreement_rate, loss_rate=loss_rate,
        gain_rate=gain_rate, epsilon=epsilon, kind=kind, delta=delta, bound=bound,
        n_inputs_always=n_always, n_inputs_estimated=n_est, n_inputs_estimated_always=n_est_always,
        n_labels_estimated=n_est_always, horizon=max(h1, h2), assumption=_assumption(kind),
    )


def _assumption(kind: str) -> str:
    if kind == "difference":
        return ("A difference target does not involve the reference's accuracy: only the disagreements "
                "need labels.")
    return ("n_inputs / n_labels assume the reference's accuracy is known from elsewhere (labels on the "
            "disagreements only); n_inputs_estimated / n_labels_estimated estimate it from the same "
            "labels (every input labelled).")
