"""The objectives of threshold selection, in one table: one entry per keyword.

Every place that names an objective reads it from here: :func:`confroute.choose_thresholds`
(which keyword, which stage counts, what it needs), the choice types (their wording), cross-fitting
and the displays. A keyword means one guarantee wherever it appears: ``target_relative_accuracy``
and ``max_accuracy_drop`` are always the *paired* certificate, never an unpaired system-accuracy
target computed from the fallback's accuracy.

Examples
--------
>>> OBJECTIVES["target_relative_accuracy"].certificate.split(":")[0]
'paired'
>>> objective_of("cost").keyword
'max_cost_per_input'
>>> OBJECTIVES["max_accuracy_drop"].statement(0.01)
'system - fallback accuracy >= -0.01'
>>> given_objective({"target_accuracy": 0.9, "target_coverage": None})
(Objective('target_accuracy'), 0.9)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core._params import Interval

__all__ = ["Objective", "OBJECTIVES", "KEYWORDS", "objective_of", "given_objective", "objective_in"]

_ACCURACY = Interval(0.0, 1.0, "neither")
_SYSTEM = Interval(0.0, 1.0, "right")
_SHARE = Interval(0.0, 1.0, "both")
_BUDGET = Interval(0.0, math.inf, "left")
_SAVED = Interval(-math.inf, 1.0, "right")


@dataclass(frozen=True)
class Objective:
    """One objective of threshold selection.

    Attributes
    ----------
    keyword : str
        The argument of :func:`~confroute.choose_thresholds` (``target_accuracy``, ...).
    name : str
        The short name a choice reports in ``objective`` (``"accepted_accuracy"``, ...).
    constrains : str
        What the target bounds, in one sentence.
    wording : str
        The figure's name in text and HTML displays.
    sense : {">=", "<="}
        The figure must reach the target from above (``">="``) or stay under it (``"<="``).
    display : {"pct", "num"}
        How the figure is formatted.
    needs_prices, needs_fallback : bool
        Whether it needs stage prices (a cost model) or the last stage's answers (labels on
        what the fallback says).
    max_stages : int or None
        The most stages it supports (``None``: any number).
    per_class : bool
        Whether it has a per-class form (one threshold per predicted class).
    paired : bool
        Certified from the inputs where the stages disagree (with ``delta``; ``delta=None``
        chooses on the same figure empirically).
    certificate : str
        The certificate procedure behind ``delta`` (two stages; cascades: see ``cascade``).
    cascade : str
        The procedure for three or more stages (empty when not supported).
    target_range : Interval
        The targets it accepts.
    """

    keyword: str
    name: str
    constrains: str
    wording: str
    sense: str
    display: str
    needs_prices: bool
    needs_fallback: bool
    max_stages: int | None
    per_class: bool
    paired: bool
    certificate: str
    cascade: str
    target_range: Interval

    def __repr__(self) -> str:
        return f"Objective({self.keyword!r})"

    def supports(self, n_stages: int) -> bool:
        """Whether this objective can choose the thresholds of ``n_stages`` stages."""
        return self.max_stages is None or n_stages <= self.max_stages

    def meets(self, value: float, target: float) -> bool:
        """Whether a figure meets the target (``nan`` never does)."""
        if not math.isfinite(value):
            return False
        return value <= target + 1e-12 if self.sense == "<=" else value >= target - 1e-12

    def statement(self, target: float) -> str:
        """The target in words, as reports print it (``"system accuracy >= 0.95"``).

        ``max_accuracy_drop`` is a drop: its figure (system minus fallback accuracy) must stay at
        or above ``-target``.
        """
        bar = -target if self.name == "accuracy_drop" else target
        return f"{self.wording} {self.sense} {bar:g}"

    def check_target(self, target: Any) -> float:
        """The target as a finite float in the objective's range."""
        if isinstance(target, numbers.Real) and not isinstance(target, bool) and not math.isfinite(target):
            raise ValueError(f"{self.keyword} must be a finite number, got {float(target)}")
        value = self.target_range.check(target, self.keyword)
        assert value is not None
        return value


_TABLE = (
    Objective(
        "target_accuracy", "accepted_accuracy",
        "accuracy of the first stage on the inputs it accepts", "accuracy on accepted inputs",
        ">=", "pct", False, False, 2, True, False,
        "fallback procedure (Wiens 2003) over Clopper-Pearson tests of every distinct score, strict "
        "to loose (method='single', 'multistart', 'split' or 'betting' on request)",
        "", _ACCURACY,
    ),
    Objective(
        "target_system_accuracy", "system_accuracy",
        "accuracy of the whole routed system", "system accuracy",
        ">=", "pct", False, True, None, False, False,
        "fixed-sequence Clopper-Pearson lower bounds on system accuracy, strict to loose",
        "Clopper-Pearson lower bound, Bonferroni over the evaluation's grid", _SYSTEM,
    ),
    Objective(
        "target_coverage", "coverage",
        "share of inputs the first stage answers", "coverage",
        ">=", "pct", False, False, 2, False, False,
        "Clopper-Pearson lower bound on coverage (monotone: no multiplicity correction)",
        "", _SHARE,
    ),
    Objective(
        "max_cost_per_input", "cost",
        "mean cost per input", "cost per input",
        "<=", "num", True, False, None, False, False,
        "Clopper-Pearson lower bound on coverage, priced by the CostModel",
        "Hoeffding upper bound on the mean cost, Bonferroni over the evaluation's grid", _BUDGET,
    ),
    Objective(
        "min_savings", "savings",
        "share of cost saved against the last stage alone", "savings",
        ">=", "pct", True, False, 2, False, False,
        "Clopper-Pearson lower bound on coverage, priced by the CostModel",
        "", _SAVED,
    ),
    Objective(
        "target_relative_accuracy", "relative_accuracy",
        "system accuracy as a share of the last stage's own accuracy", "system / fallback accuracy",
        ">=", "pct", False, True, 2, False, True,
        "paired: bound on the losses among the inputs where the stages disagree (bound='cp_losses', "
        "'conditional' or 'betting'), fixed-sequence strict to loose",
        "", _SYSTEM,
    ),
    Objective(
        "max_accuracy_drop", "accuracy_drop",
        "system accuracy at least the last stage's accuracy minus the target", "system - fallback accuracy",
        ">=", "pct", False, True, 2, False, True,
        "paired: bound on the losses among the inputs where the stages disagree (bound='cp_losses', "
        "'conditional' or 'betting'), fixed-sequence strict to loose",
        "", _ACCURACY,
    ),
)

#: Every objective, by keyword, in the order the documentation lists them.
OBJECTIVES: Mapping[str, Objective] = {o.keyword: o for o in _TABLE}
#: The keywords, in order.
KEYWORDS: tuple[str, ...] = tuple(OBJECTIVES)
_BY_NAME = {o.name: o for o in _TABLE}


def objective_of(key: str) -> Objective:
    """The objective for a keyword (``"target_accuracy"``) or a short name (``"accepted_accuracy"``)."""
    found = OBJECTIVES.get(key) or _BY_NAME.get(key)
    if found is None:
        raise ValueError(f"unknown objective {key!r}; the objectives are {list(KEYWORDS)}")
    return found


def objective_in(arguments: Mapping[str, Any]) -> tuple[Objective, float]:
    """:func:`given_objective` among a function's arguments (``locals()`` at its first line):
    the objective keywords are picked out, everything else is ignored."""
    return given_objective({k: arguments.get(k) for k in KEYWORDS})


def given_objective(values: Mapping[str, Any]) -> tuple[Objective, float]:
    """The one objective given among keyword arguments, and its checked target.

    ``values`` maps keywords to targets (``None``: not given). Exactly one must be given.
    """
    unknown = [k for k in values if k not in OBJECTIVES]
    if unknown:
        raise TypeError(f"unknown objectives {unknown}; the objectives are {list(KEYWORDS)}")
    given = [k for k, v in values.items() if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(KEYWORDS)} (got {given or 'none'})")
    obj = OBJECTIVES[given[0]]
    return obj, obj.check_target(values[given[0]])
