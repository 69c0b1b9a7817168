"""The three kinds of threshold choice, one contract (:class:`confroute.core.choice.Choice`).

:func:`confroute.choose_thresholds` returns a :class:`ThresholdChoice` (two stages, one global
threshold), a :class:`PerClassChoice` (two stages, one threshold per predicted class) or a
:class:`CascadeChoice` (three or more stages). All three have these attributes, of these types:

========================  =================================================================
``thresholds``            list: one threshold per non-last stage (pass the choice to a router)
``feasible``              bool: the target was met (and certified, when ``delta`` was given)
``guaranteed``            float: the certified bound at the chosen thresholds; ``nan`` when
                          nothing is certified (an empirical choice, or a failed certificate)
``procedure``             str: the selection or certification procedure
``objective``             str: the objective's short name (see :mod:`.objectives`)
``target``                float
``delta``                 float or None (``None``: empirical)
``coverage``              float: share of inputs answered before the last stage
``system_accuracy``       float: ``nan`` without the last stage's answers
``cost_per_input``        float: ``nan`` without prices
``savings``               float: ``nan`` without prices
========================  =================================================================

and ``to_dict()`` / ``from_dict()`` round-trip through JSON (non-finite numbers become ``null``;
a ``null`` threshold reads back as ``inf``, "accept nothing").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..core import _html
from ..core._json import json_value
from ..core.choice import Choice
from .objectives import objective_of

__all__ = ["ThresholdChoice", "PerClassChoice", "CascadeChoice"]

NAN = math.nan  # one object, so choices holding nan still compare equal


def _float(v: Any, missing: float = NAN) -> float:
    return missing if v is None else float(v)


def _fields_from(cls: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The dataclass fields of ``cls`` found in ``data`` (from ``to_dict``), each ``float`` field
    read back with :func:`_float` (``null`` -> ``nan``)."""
    return {f.name: _float(data[f.name]) if f.type == "float" else data[f.name]
            for f in fields(cls) if f.name in data}


def _one_nan(choice: Any) -> None:
    """Every nan field as the one ``NAN`` object, so equal choices compare equal."""
    for f in fields(choice):
        value = getattr(choice, f.name)
        if isinstance(value, float) and math.isnan(value) and value is not NAN:
            object.__setattr__(choice, f.name, NAN)


class _ObjectiveChoice(Choice):
    """A choice that says its objective in the words of the one objective table."""

    objective: str

    @property
    def wording(self) -> str:
        """The objective's name in text and HTML displays (from :mod:`.objectives`)."""
        return objective_of(self.objective).wording

    @property
    def sense(self) -> str:
        """``">="`` (a floor) or ``"<="`` (a ceiling), from :mod:`.objectives`."""
        return objective_of(self.objective).sense

    @property
    def figure_format(self) -> str:
        """``"pct"`` or ``"num"``, from :mod:`.objectives`."""
        return objective_of(self.objective).display


@dataclass(frozen=True)
class ThresholdChoice(_ObjectiveChoice):
    """A chosen threshold of two stages, what it achieves on the calibration data, and what is
    guaranteed.

    Attributes
    ----------
    threshold : float
        Accept when the rule of :mod:`confroute.core.decision` accepts (``score >= threshold``;
        ``inf``: accept nothing).
    objective : str
        ``"accepted_accuracy"``, ``"system_accuracy"``, ``"coverage"``, ``"cost"``,
        ``"savings"``, ``"relative_accuracy"`` or ``"accuracy_drop"`` (paired targets).
    target : float
        The target as given (a cost budget is a mean cost per input).
    delta : float or None
        The guarantee holds with probability ``1 - delta``; ``None`` for an empirical choice.
    feasible : bool
        False when no threshold meets the target; then ``threshold`` is the safe end (accept
        nothing for accuracy objectives, accept everything for coverage, cost and savings).
    empirical : float
        The objective's figure on the calibration data.
    guaranteed : float
        Its bound: a lower bound on accuracy, coverage or savings, or an upper bound on cost,
        holding with probability ``1 - delta``; ``nan`` when nothing is certified.
    n, m, k : int
        Calibration inputs, inputs accepted, and primary errors among them.
    coverage, accepted_accuracy, system_accuracy, cost_per_input, savings : float
        ``nan`` when fallback answers / prices were not available.
    procedure : str
        How the threshold was chosen (e.g. ``"fallback"``, ``"fixed_sequence"``,
        ``"paired_cp_losses"``, ``"empirical_loosest"``).
    assumption : str
        What the guarantee assumes about the calibration data, in one sentence (exchangeable
        rows; for a betting certificate also the seed of the random order it read them in);
        ``""`` for an empirical choice. Shown by ``str()`` and the HTML display.
    """

    threshold: float
    objective: str
    target: float
    delta: float | None
    feasible: bool
    empirical: float
    guaranteed: float
    n: int
    m: int
    k: int
    coverage: float
    accepted_accuracy: float
    system_accuracy: float = NAN
    cost_per_input: float = NAN
    savings: float = NAN
    procedure: str = ""
    assumption: str = ""

    def __post_init__(self) -> None:
        _one_nan(self)

    @property
    def thresholds(self) -> list[float]:  # type: ignore[override]
        """``[threshold]``: what a router takes (``ThresholdRouter(p, f, choice)``)."""
        return [self.threshold]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (non-finite numbers become ``None``)."""
        return {f.name: json_value(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdChoice:
        """The choice back from :meth:`to_dict`."""
        values = _fields_from(cls, data)
        values["threshold"] = _float(data.get("threshold"), math.inf)  # null: accept nothing
        return cls(**values)

    def __str__(self) -> str:
        obj = objective_of(self.objective)
        bound = ""
        if not math.isnan(self.guaranteed):
            rel = "<=" if obj.sense == "<=" else ">="
            level = 1 - (self.delta or 0.0)
            bound = f", guaranteed {rel} {self.guaranteed:.4g} with probability {level:.3g}"
        status = "" if self.feasible else " [target not reachable]"
        return (
            f"threshold {self.threshold:.6g}{status}: {obj.wording} {self.empirical:.4g} on calibration data "
            f"(target {self.target:.4g}{bound}); coverage {self.coverage:.1%}, "
            f"{self.m} accepted of {self.n}, {self.k} errors"
        ) + (f"\n{self.assumption}" if self.assumption else "")

    def _repr_html_(self) -> str:
        return _html.threshold_choice_html(self)

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{f.name}={getattr(self, f.name):.6g}" if isinstance(getattr(self, f.name), float)
            else f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
        )
        return f"ThresholdChoice({parts})"


@dataclass(frozen=True, repr=False)
class PerClassChoice(_ObjectiveChoice):
    """A threshold per predicted class of the first of two stages.

    ``np.asarray(choice)`` is ``choice.threshold``, so the choice itself can be passed as the
    router's threshold.

    Attributes
    ----------
    threshold : ndarray of shape (k,)
        Accept an input predicted as class ``c`` when its score passes ``threshold[c]``. A class
        with no feasible threshold gets ``upper`` (default ``inf``: nothing of that class is accepted).
    class_feasible : ndarray of bool, shape (k,)
        Per class: the target was met (classes never predicted count as met).
    feasible : bool
        Every predicted class met the target.
    guaranteed : float
        The smallest certified per-class bound (each class tested at ``level``); ``nan`` when a
        predicted class is not certified or the choice is empirical.
    classes : tuple or None
    target : float
    delta : float or None
    level : float or None
        Level each class was tested at (``delta / K`` with Bonferroni).
    choices : list of ThresholdChoice or None
        The per-class choice (``None`` for a class never predicted in the data).
    n_predicted : ndarray of int, shape (k,)
    """

    threshold: np.ndarray
    class_feasible: np.ndarray
    classes: tuple[Any, ...] | None
    target: float
    delta: float | None
    level: float | None
    choices: list[ThresholdChoice | None]
    n_predicted: np.ndarray
    feasible: bool = False
    guaranteed: float = NAN
    procedure: str = ""
    objective: str = "accepted_accuracy"
    coverage: float = NAN
    system_accuracy: float = NAN
    cost_per_input: float = NAN
    savings: float = NAN

    def __post_init__(self) -> None:
        _one_nan(self)

    def _repr_html_(self) -> str:
        return _html.per_class_choice_html(self)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.threshold if dtype is None else self.threshold.astype(dtype)

    def __len__(self) -> int:
        return int(self.threshold.size)

    @property
    def thresholds(self) -> list[np.ndarray]:  # type: ignore[override]
        """``[threshold]``: what a router takes (``ThresholdRouter(p, f, choice)``)."""
        return [self.threshold]

    @property
    def assumption(self) -> str:  # type: ignore[override]
        """What the per-class guarantees assume (the same sentence for every class)."""
        return next((c.assumption for c in self.choices if c is not None and c.assumption), "")

    def as_dict(self) -> dict[Any, float]:
        """``{class: threshold}`` (also accepted by the router)."""
        names = self.classes or tuple(range(len(self)))
        return {c: float(t) for c, t in zip(names, self.threshold)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (non-finite numbers become ``None``)."""
        return {
            "threshold": [json_value(float(t)) for t in self.threshold],
            "class_feasible": self.class_feasible.tolist(),
            "classes": None if self.classes is None else [json_value(c) for c in self.classes],
            "target": self.target,
            "delta": self.delta,
            "level": self.level,
            "choices": [None if c is None else c.to_dict() for c in self.choices],
            "n_predicted": self.n_predicted.tolist(),
            **{name: json_value(getattr(self, name)) for name in (
                "feasible", "guaranteed", "procedure", "objective", "coverage", "system_accuracy",
                "cost_per_input", "savings")},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PerClassChoice:
        """The choice back from :meth:`to_dict`."""
        return cls(
            threshold=np.array([_float(t, math.inf) for t in data["threshold"]]),
            class_feasible=np.asarray(data["class_feasible"], dtype=bool),
            classes=None if data.get("classes") is None else tuple(data["classes"]),
            target=float(data["target"]), delta=data.get("delta"), level=data.get("level"),
            choices=[None if c is None else ThresholdChoice.from_dict(c) for c in data["choices"]],
            n_predicted=np.asarray(data["n_predicted"], dtype=np.int64),
            feasible=bool(data["feasible"]), guaranteed=_float(data.get("guaranteed")),
            procedure=str(data.get("procedure", "")), objective=str(data.get("objective", "accepted_accuracy")),
            **{name: _float(data.get(name)) for name in ("coverage", "system_accuracy", "cost_per_input", "savings")},
        )

    def __repr__(self) -> str:
        names = tuple(str(c) for c in (self.classes or range(len(self))))
        lines = [f"PerClassChoice(target={self.target:g}, delta={self.delta}, level={self.level}, "
                 f"feasible={self.feasible})"]
        lines.append(
            f"  {'class':<14} {'threshold':>10} {'predicted':>10} {'coverage':>9} {'acc':>7} {'bound':>7}"
        )
        for c, name in enumerate(names):
            ch = self.choices[c]
            if ch is None:
                lines.append(f"  {name:<14} {self.threshold[c]:>10.4g} {0:>10}")
                continue
            bound = "" if math.isnan(ch.guaranteed) else f"{ch.guaranteed:.4f}"
            flag = "" if self.class_feasible[c] else "  (target not reachable)"
            lines.append(
                f"  {name:<14} {self.threshold[c]:>10.4g} {int(self.n_predicted[c]):>10} "
                f"{ch.coverage:>9.1%} {ch.accepted_accuracy:>7.4f} {bound:>7}{flag}"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class CascadeChoice(_ObjectiveChoice):
    """Jointly chosen thresholds of a cascade, what they achieve on the data, and what is
    guaranteed.

    Attributes
    ----------
    thresholds : list of float
        One per non-last stage; ``inf`` means "this stage accepts nothing".
    objective : {"system_accuracy", "cost"}
    target : float
    delta : float or None
    feasible : bool
    method : {"exhaustive", "coordinate"}
    n_evaluated : int
        Threshold tuples evaluated by the search.
    n_candidates : int
        Size of the grid (the Bonferroni factor of the guarantee).
    system_accuracy, cost_per_input, savings : float
        On the data the choice was made on (``nan`` when unknown).
    accuracy_bound : float
        Lower bound on system accuracy holding with probability ``1 - delta`` (``nan``: none).
    cost_bound : float
        Upper bound on the mean cost per input holding with probability ``1 - delta``.
    shares : tuple of float
        Share of inputs each stage answers.
    guaranteed : float
        The bound on the constrained figure (``accuracy_bound`` or ``cost_bound``); ``nan``
        when nothing is certified.
    procedure : str
    coverage : float
        Share answered before the last stage.
    assumption : str
        What the guarantee assumes about the calibration data (exchangeable rows), in one
        sentence; ``""`` for an empirical choice. Shown by the HTML display.
    """

    thresholds: list[float]
    objective: str
    target: float
    delta: float | None
    feasible: bool
    method: str
    n_evaluated: int
    n_candidates: int
    system_accuracy: float
    cost_per_input: float
    savings: float
    accuracy_bound: float
    cost_bound: float
    shares: tuple[float, ...]
    guaranteed: float = NAN
    procedure: str = ""
    coverage: float = NAN
    assumption: str = ""

    def __post_init__(self) -> None:
        _one_nan(self)

    def _repr_html_(self) -> str:
        return _html.cascade_choice_html(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (non-finite numbers become ``None``)."""
        out = {f.name: json_value(getattr(self, f.name)) for f in fields(self)}
        out["thresholds"] = [json_value(float(t)) for t in self.thresholds]
        out["shares"] = [json_value(float(s)) for s in self.shares]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CascadeChoice:
        """The choice back from :meth:`to_dict`."""
        values = _fields_from(cls, data)
        values["thresholds"] = [_float(t, math.inf) for t in values["thresholds"]]
        values["shares"] = tuple(_float(s) for s in values["shares"])
        return cls(**values)
