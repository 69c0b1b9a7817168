"""Routing against the alternatives: routed operating points and single models on one Pareto front.

Routing only pays when no single model gives the same accuracy for less. A user who only
quantises the fallback, or only runs the cheap model, has one operating point each; the routed
system has one per threshold. :func:`compare_to_alternatives` puts them all on one
accuracy-versus-measured-cost plane, finds the Pareto front (with
:func:`confroute.evaluation.sweep.pareto_front`), and says in words whether routing is on it
and what routing costs where it matches each alternative's accuracy.

The interface is array-level on purpose: costs and accuracies come from wherever they were
measured (an :class:`~confroute.Evaluation`, a benchmark, a table).
Pass the routed points that route some inputs but not all: the two end points of a threshold
sweep *are* the single stages, so pass those as alternatives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core._json import json_float
from .sweep import pareto_front

__all__ = ["ParetoComparison", "compare_to_alternatives"]


def _vector(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers, got {type(values).__name__}") from None
    return arr


def _fmt(x: float) -> str:
    return f"{x:.4g}"


@dataclass(frozen=True)
class ParetoComparison:
    """Routed operating points and single-model alternatives on one accuracy-cost plane.

    Attributes
    ----------
    names : tuple of str
        One per point: the alternatives' names, then ``"routed[i]"`` (or the given labels).
    cost, accuracy : ndarray
        Per point; lower cost and higher accuracy are better.
    routed : ndarray of bool
        Which points are routed operating points.
    on_front : ndarray of bool
        Which points are on the Pareto front (no other point is at least as accurate for no
        more cost; on an exact tie the alternative is kept, so a routed point must beat it).
    cost_unit : str
        What ``cost`` measures, for messages and axis labels.
    """

    names: tuple[str, ...]
    cost: np.ndarray
    accuracy: np.ndarray
    routed: np.ndarray
    on_front: np.ndarray
    cost_unit: str = "cost per input"

    @property
    def routing_on_front(self) -> bool:
        """True when at least one routed point is on the Pareto front."""
        return bool((self.on_front & self.routed).any())

    @property
    def front(self) -> list[str]:
        """Names of the points on the front, cheapest first."""
        idx = np.flatnonzero(self.on_front)
        return [self.names[i] for i in idx[np.argsort(self.cost[idx], kind="stable")]]

    @property
    def alternatives(self) -> list[str]:
        return [n for n, r in zip(self.names, self.routed) if not r]

    def at_equal_accuracy(self, name: str) -> tuple[int, float] | None:
        """The cheapest routed point at least as accurate as alternative ``name``.

        Returns ``(index, cost ratio routed / alternative)``, or ``None`` when no routed point
        reaches that accuracy.
        """
        i = self.names.index(name)
        ok = np.flatnonzero(self.routed & (self.accuracy >= self.accuracy[i]) & np.isfinite(self.cost))
        if ok.size == 0:
            return None
        j = int(ok[np.argmin(self.cost[ok])])
        ratio = float(self.cost[j] / self.cost[i]) if self.cost[i] > 0 else float("inf")
        return j, ratio

    @property
    def summary(self) -> str:
        """The comparison in words: is routing on the front, and does it beat each alternative."""
        routed_front = [self.names[i] for i in np.flatnonzero(self.on_front & self.routed)]
        if routed_front:
            first = (
                f"Routing is on the accuracy-cost Pareto front: {len(routed_front)} of "
                f"{int(self.routed.sum())} routed operating points are beaten by no single model."
            )
        else:
            first = (
                "Routing is NOT on the accuracy-cost Pareto front: every routed operating point is "
                f"matched or beaten by {', '.join(self.front)} (at least as accurate for no more "
                f"{self.cost_unit})."
            )
        parts = [first]
        for name in self.alternatives:
            i = self.names.index(name)
            hit = self.at_equal_accuracy(name)
            what = f"{name} (accuracy {self.accuracy[i]:.4f}, {self.cost_unit} {_fmt(self.cost[i])})"
            if hit is None:
                parts.append(f"No routed point reaches the accuracy of {what}.")
            else:
                j, ratio = hit
                verdict = "beats it" if ratio < 1 else "does not beat it"
                parts.append(
                    f"At the accuracy of {what}, routing costs {_fmt(self.cost[j])} "
                    f"({ratio:.2f}x): routing {verdict}."
                )
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the points, the front, and the summary sentence."""
        return {
            "cost_unit": self.cost_unit,
            "points": [
                {
                    "name": n,
                    "cost": json_float(c),
                    "accuracy": json_float(a),
                    "routed": bool(r),
                    "on_front": bool(f),
                }
                for n, c, a, r, f in zip(self.names, self.cost, self.accuracy, self.routed, self.on_front)
            ],
            "front": self.front,
            "routing_on_front": self.routing_on_front,
            "summary": self.summary,
        }

    def __repr__(self) -> str:
        return (
            f"ParetoComparison(routed={int(self.routed.sum())}, alternatives={self.alternatives}, "
            f"front={self.front}, routing_on_front={self.routing_on_front})"
        )

    def plot(self, ax: Any = None, path: str | Path | None = None, annotate: bool = True) -> Any:
        """Accuracy against cost: the routed curve, each alternative, and the front.

        Draws on ``ax`` (a new figure when ``None``), saves a PNG when ``path`` is given, and
        returns the Axes. Needs matplotlib (``pip install 'confroute[plot]'``).
        """
        from . import plotting

        ax = plotting.new_axes(ax, figsize=(5.6, 3.8))
        r = np.flatnonzero(self.routed)
        r = r[np.argsort(self.cost[r], kind="stable")]
        if r.size:
            ax.plot(self.cost[r], self.accuracy[r], "-", color="C0", lw=1.2, marker=".", ms=4,
                    label="routed (one point per threshold)")
        markers = "osD^vP*X"
        for k, name in enumerate(self.alternatives):
            i = self.names.index(name)
            ax.plot(self.cost[i], self.accuracy[i], markers[k % len(markers)], color=f"C{k + 1}", ms=7,
                    label=name, linestyle="none")
            if annotate:
                ax.annotate(name, (self.cost[i], self.accuracy[i]), textcoords="offset points",
                            xytext=(5, -10), fontsize=7)
        f = np.flatnonzero(self.on_front)
        f = f[np.argsort(self.cost[f], kind="stable")]
        ax.step(self.cost[f], self.accuracy[f], where="post", color="0.3", ls="--", lw=0.9,
                label="Pareto front")
        ax.set_xlabel(self.cost_unit)
        ax.set_ylabel("accuracy")
        ax.set_title("routing on the front" if self.routing_on_front else "routing NOT on the front",
                     fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        return plotting.finish(ax, path)


def compare_to_alternatives(
    routed_cost: Any,
    routed_accuracy: Any,
    alternatives: Mapping[str, tuple[float, float]],
    *,
    routed_names: Sequence[str] | None = None,
    cost_unit: str = "cost per input",
) -> ParetoComparison:
    """Put routed operating points and single-model alternatives on one Pareto front.

    Parameters
    ----------
    routed_cost, routed_accuracy : array-like
        One entry per routed operating point (e.g. per threshold), measured on the same inputs
        as the alternatives. Non-finite points are kept in the result but never on the front.
    alternatives : mapping of name to (cost, accuracy)
        Each single model the routed system should be compared with: each stage alone, and
        any other model (e.g. the fallback quantised to int8).
    routed_names : sequence of str, optional
        Labels of the routed points (default ``routed[0]``, ``routed[1]``, ...).
    cost_unit : str, default "cost per input"
        What the costs measure (e.g. "ms per sentence"), used in the summary and the plot.

    Returns
    -------
    ParetoComparison

    Examples
    --------
    >>> c = compare_to_alternatives([2.0, 3.0], [0.90, 0.91],
    ...                             {"cheap": (1.0, 0.86), "big": (5.0, 0.92), "big-int8": (2.5, 0.92)})
    >>> c.front
    ['cheap', 'routed[0]', 'big-int8']
    >>> c.routing_on_front
    True
    >>> c.summary.split(". ")[0]
    'Routing is on the accuracy-cost Pareto front: 1 of 2 routed operating points are beaten by no single model'
    """
    rc = _vector(routed_cost, "routed_cost")
    ra = _vector(routed_accuracy, "routed_accuracy")
    if rc.shape != ra.shape:
        raise ValueError(f"routed_cost has {rc.size} points but routed_accuracy has {ra.size}")
    if not isinstance(alternatives, Mapping) or not alternatives:
        raise ValueError("alternatives must be a non-empty mapping of name -> (cost, accuracy)")
    alt_names, alt_cost, alt_acc = [], [], []
    for name, point in alternatives.items():
        try:
            c, a = (float(x) for x in point)
        except (TypeError, ValueError):
            raise ValueError(f"alternative {name!r} must be a (cost, accuracy) pair, got {point!r}") from None
        if not (np.isfinite(c) and np.isfinite(a)):
            raise ValueError(f"alternative {name!r} has a non-finite cost or accuracy: {(c, a)}")
        alt_names.append(str(name))
        alt_cost.append(c)
        alt_acc.append(a)
    names_r = [f"routed[{i}]" for i in range(rc.size)] if routed_names is None else [str(n) for n in routed_names]
    if len(names_r) != rc.size:
        raise ValueError(f"routed_names has {len(names_r)} names for {rc.size} routed points")
    names = tuple(alt_names + names_r)
    if len(set(names)) != len(names):
        raise ValueError(f"point names must be unique, got {list(names)}")
    cost = np.concatenate([alt_cost, rc])
    accuracy = np.concatenate([alt_acc, ra])
    negative = (cost < 0) | (accuracy < 0) | (accuracy > 1)
    if negative[np.isfinite(cost) & np.isfinite(accuracy)].any():
        raise ValueError("costs must be >= 0 and accuracies within [0, 1]")
    routed = np.r_[np.zeros(len(alt_names), bool), np.ones(rc.size, bool)]
    on_front = np.zeros(cost.size, bool)
    # Alternatives come first, so on an exact tie pareto_front keeps the alternative.
    on_front[pareto_front(cost, accuracy)] = True
    return ParetoComparison(names, cost, accuracy, routed, on_front, cost_unit)
