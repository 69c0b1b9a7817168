"""Label budgets: how many inputs, and labels on their disagreements, certify a paired target.

With plenty of unlabelled traffic only the disagreements between the early stage and the
reference need a label; :func:`plan_labels` estimates how many inputs (and labels) certify a
target at a given coverage, from the disagreement and loss rates, and compares with the labels an
unpaired Clopper–Pearson bound would need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bounds import clopper_pearson
from .certificate import jsonable
from .paired import select_paired

__all__ = ["LabelPlan", "plan_labels", "smallest_n"]


@dataclass(frozen=True)
class LabelPlan:
    """How many inputs and labels a paired certificate needs at one coverage.

    Attributes
    ----------
    n_inputs : int or None
        Calibration inputs (unlabelled traffic) needed; ``None`` when the rates cannot meet the
        target at any size (the loss rate is above ``epsilon``).
    n_labels : int or None
        Labels among them: the expected number of disagreements (``n_inputs * disagreement_rate``).
    n_labels_unpaired : int or None
        Labels a Clopper–Pearson bound on the system's accuracy would need instead (every input
        labelled), at the same rates; ``None`` when it cannot reach the target.
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable."""
        return {k: jsonable(v) for k, v in self.__dict__.items()}



def _paired_passes(n: int, rates: tuple[float, float, float], epsilon: float, kind: str, delta: float,
                   bound: str) -> bool:
    p_l, p_g, acc_ref = rates
    L, G = round(p_l * n), round(p_g * n)
    F = round(acc_ref * n) if kind == "ratio" else None
    if bound == "betting":
        bound = "cp_losses"  # the planner's stand-in: betting has no closed form
    row, _ = select_paired(np.array([0, L]), np.array([0, G]), n, epsilon, delta, kind=kind, bound=bound,
                           fallback_correct=F)
    return bool(row > 0)


def smallest_n(passes: Any, start: int = 1, most: int = 10**9) -> int | None:
    """Smallest n >= start with passes(n), assuming passing is (roughly) monotone in n."""
    lo, hi = start, start
    while not passes(hi):
        lo = hi + 1
        hi *= 2
        if hi > most:
            return None
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def plan_labels(
    disagreement_rate: float, loss_rate: float, gain_rate: float = 0.0, *, epsilon: float,
    kind: str = "ratio", reference_accuracy: float | None = None, delta: float = 0.05,
    bound: str = "cp_losses",
) -> LabelPlan:
    """How many inputs, and labels on their disagreements, certify a paired target.

    The plan is for the typical draw: the smallest ``n`` at which the bound passes when the
    counts equal their expectations (``round(rate * n)``), so about half of the draws at that
    size certify; ask for more to be safe. Rates are per input at the coverage of interest:
    the disagreement rate is known from unlabelled data; losses and gains come from a pilot, a
    previous certificate or an assumption.

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
    >>> p.n_inputs, p.n_labels, p.n_labels_unpaired   # 1,052 inputs, 22 of them labelled
    (1052, 22, 1429)
    """
    if kind == "ratio" and reference_accuracy is None:
        raise ValueError("a ratio target needs reference_accuracy= (the reference's accuracy)")
    if not 0 <= loss_rate <= disagreement_rate <= 1 or gain_rate < 0 or loss_rate + gain_rate > disagreement_rate + 1e-12:
        raise ValueError("need 0 <= loss_rate + gain_rate <= disagreement_rate <= 1")
    acc = 1.0 if reference_accuracy is None else float(reference_accuracy)
    rates = (loss_rate, gain_rate, acc)
    allowed = epsilon * (acc if kind == "ratio" else 1.0)
    feasible = loss_rate - (gain_rate if bound == "conditional" else 0.0) < allowed
    n = smallest_n(lambda k: _paired_passes(k, rates, epsilon, kind, delta, bound)) if feasible else None
    # Unpaired: Clopper–Pearson lower bound on system accuracy >= the target computed from the
    # reference's accuracy (as certified today), every input labelled.
    sys_acc = acc - loss_rate + gain_rate
    goal = acc * (1 - epsilon) if kind == "ratio" else acc - epsilon

    def unpaired(k: int) -> bool:
        return bool(clopper_pearson(round(sys_acc * k), k, delta, "lower") >= goal)

    n_unpaired = smallest_n(unpaired) if sys_acc > goal else None
    return LabelPlan(
        n_inputs=n, n_labels=None if n is None else math.ceil(n * disagreement_rate),
        n_labels_unpaired=n_unpaired, disagreement_rate=disagreement_rate, loss_rate=loss_rate,
        gain_rate=gain_rate, epsilon=epsilon, kind=kind, delta=delta, bound=bound,
    )

