"""The evaluation table: its columns from counts, one operating point, and the best row.

Every figure of an :class:`~confroute.Evaluation` comes from two count matrices, inputs answered
and correct answers per stage, through :func:`table_from_counts`; costs come from the
:class:`~confroute.CostModel` alone. :class:`OperatingPoint` is the system at one choice of
thresholds (one table row, or any thresholds through :meth:`Evaluation.at
<confroute.Evaluation.at>`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core._json import json_value
from ..core.cost import CostModel

__all__ = ["TABLE_COLUMNS", "OperatingPoint", "table_from_counts", "best_row"]

#: Columns of :meth:`Evaluation.to_pandas` for two stages, in display order.
TABLE_COLUMNS = (
    "threshold",
    "n_accepted",
    "coverage",
    "routed_fraction",
    "accepted_accuracy",
    "system_accuracy",
    "cost",
    "cost_per_input",
    "savings",
)


@dataclass(frozen=True)
class OperatingPoint:
    """The system's figures at one choice of thresholds (see :meth:`Evaluation.at`).

    Attributes
    ----------
    thresholds : tuple of float
        One per non-last stage; ``nan`` for a stage with per-class thresholds (then see
        ``class_thresholds``).
    answered : tuple of int
        Inputs answered by each stage.
    n : int
    coverage : float
        Share answered by the first stage (``shares[0]``).
    shares : tuple of float
        Share answered by each stage.
    accepted_accuracy : float
        Accuracy of the first stage on the inputs it answers (``nan`` if none).
    system_accuracy : float or None
        Accuracy of the whole system (``None`` without the last stage's answers).
    cost, cost_per_input, savings : float or None
        Total cost of the ``n`` inputs, per input, and savings against the last stage alone
        (``None`` without prices).
    class_thresholds : tuple or None
        Per stage, the per-class thresholds in column order (``None`` for a global threshold);
        ``None`` when no stage is per-class.
    row : int or None
        Table row of this point, when it is one.
    """

    thresholds: tuple[float, ...]
    answered: tuple[int, ...]
    n: int
    coverage: float
    shares: tuple[float, ...]
    accepted_accuracy: float
    system_accuracy: float | None
    cost: float | None
    cost_per_input: float | None
    savings: float | None
    class_thresholds: tuple[tuple[float, ...] | None, ...] | None = None
    row: int | None = None

    @property
    def threshold(self) -> float:
        """The first stage's threshold."""
        return self.thresholds[0]

    @property
    def n_accepted(self) -> int:
        """Inputs answered by the first stage."""
        return self.answered[0]

    @property
    def routed_fraction(self) -> float:
        return 1.0 - self.coverage if self.n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "thresholds": [json_value(t) for t in self.thresholds],
            "answered": list(self.answered),
            "n_accepted": self.n_accepted,
            "n": self.n,
            "coverage": json_value(self.coverage),
            "routed_fraction": json_value(self.routed_fraction),
            "shares": [json_value(s) for s in self.shares],
            "accepted_accuracy": json_value(self.accepted_accuracy),
            "system_accuracy": json_value(self.system_accuracy),
            "cost": json_value(self.cost),
            "cost_per_input": json_value(self.cost_per_input),
            "savings": json_value(self.savings),
            "row": self.row,
        }
        if self.class_thresholds is not None:
            out["class_thresholds"] = [
                None if c is None else [json_value(v) for v in c] for c in self.class_thresholds
            ]
        return out

    @classmethod
    def from_table(
        cls, table: dict[str, np.ndarray], i: int, n: int, *, has_cost: bool, last_known: bool,
        row: int | None = None, class_thresholds: tuple[tuple[float, ...] | None, ...] | None = None,
        thresholds: tuple[float, ...] | None = None,
    ) -> OperatingPoint:
        """Row ``i`` of a table from :func:`table_from_counts`."""
        return cls(
            thresholds=thresholds if thresholds is not None else tuple(float(v) for v in table["thresholds"][i]),
            answered=tuple(int(v) for v in table["answered"][i]),
            n=n,
            coverage=float(table["coverage"][i]) if n else float("nan"),
            shares=tuple(float(v) for v in table["shares"][i]),
            accepted_accuracy=float(table["accepted_accuracy"][i]),
            system_accuracy=float(table["system_accuracy"][i]) if last_known else None,
            cost=float(table["cost"][i]) if has_cost else None,
            cost_per_input=float(table["cost_per_input"][i]) if has_cost else None,
            savings=float(table["savings"][i]) if has_cost else None,
            class_thresholds=class_thresholds,
            row=row,
        )


def table_from_counts(
    thresholds: np.ndarray, answered: np.ndarray, correct: np.ndarray, n: int,
    cost_model: CostModel | None, last_known: bool, cost: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every column from the counts: ``thresholds`` (M, N-1), ``answered`` and ``correct``
    (correct answers per stage) (M, N).

    ``cost`` (M,), when given, is the exact total cost of each row (e.g. summed from
    :meth:`CostModel.per_input <confroute.CostModel.per_input>`); by default it comes from the
    counts through :meth:`CostModel.cost_of_answers <confroute.CostModel.cost_of_answers>`.
    """
    m0 = answered[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = answered / n if n else np.full(answered.shape, np.nan)
        accepted = np.where(m0 > 0, correct[:, 0] / np.maximum(m0, 1), np.nan)
        n_correct = correct.sum(axis=1)
        system = n_correct / n if (n and last_known) else np.full(m0.shape, np.nan)
    if cost_model is not None:
        cost = cost_model.cost_of_answers(answered) if cost is None else np.asarray(cost, dtype=np.float64)
        per_input = cost / n if n else np.full(cost.shape, np.nan)
        savings = cost_model.savings_of(cost, n)
    else:
        cost = per_input = savings = np.full(m0.shape, np.nan)
    table = {
        "thresholds": thresholds,
        "answered": answered,
        "correct": correct,
        "shares": shares,
        "n_correct": n_correct if last_known else np.full(m0.shape, np.nan),
        "n_accepted": m0,
        "coverage": shares[:, 0] if answered.size else np.zeros(0),
        "routed_fraction": 1.0 - shares[:, 0] if answered.size else np.zeros(0),
        "accepted_accuracy": accepted,
        "system_accuracy": system,
        "cost": cost,
        "cost_per_input": per_input,
        "savings": savings,
    }
    if thresholds.shape[1] == 1:
        table["threshold"] = thresholds[:, 0]
    return table


def best_row(
    table: dict[str, np.ndarray], target_acc: float | None, budget: float | None,
    bounds: tuple[np.ndarray, np.ndarray] | None,
) -> int:
    """Row index of the best feasible row; -1 - (safe row) when none is feasible."""
    if (target_acc is None) == (budget is None):
        raise ValueError("give exactly one of target_system_accuracy, max_cost_per_input")
    if budget is not None and not math.isfinite(budget):
        raise ValueError(f"max_cost_per_input must be a finite number, got {budget}")
    acc, cost = table["system_accuracy"], table["cost_per_input"]
    acc_b, cost_b = bounds if bounds is not None else (acc, cost)
    if target_acc is not None:
        if np.isnan(cost).all():
            # Without prices, the cheapest proxy is answering as early as possible.
            cost = -(table["shares"] * np.arange(table["shares"].shape[1], 0, -1)).sum(axis=1)
        ok = acc_b >= target_acc - 1e-12
        # Cheapest feasible; ties to the more accurate, then to the first row.
        key = np.lexsort((-acc, cost))
    else:
        if np.isnan(cost).all():
            raise ValueError("max_cost_per_input needs stage prices (cost_model)")
        assert budget is not None
        ok = cost_b <= budget + 1e-12
        key = np.lexsort((cost, -acc))
    feasible = key[ok[key]]
    if feasible.size:
        return int(feasible[0])
    # Safe end: the most accurate row (accuracy target) or the cheapest (budget).
    safe = np.lexsort((cost, -acc))[0] if target_acc is not None else np.lexsort((-acc, cost))[0]
    return -1 - int(safe)
