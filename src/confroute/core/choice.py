"""What every threshold choice is, and the one way a router or an evaluation reads its thresholds.

A *choice* is the answer of :func:`confroute.choose_thresholds`: whatever the number of stages,
global or per-class thresholds, certified or empirical, it is a :class:`Choice` with the same
attributes of the same types. Routers and :meth:`Evaluation.at <confroute.Evaluation.at>` take it
as it is, through :func:`stage_thresholds`, the one unwrap: a choice gives its ``thresholds``;
an :class:`~confroute.Evaluation` (one threshold per *table row*, not per stage) is refused with a
``TypeError``, never read as per-class thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

__all__ = ["Choice", "stage_thresholds"]


class Choice:
    """Base of every threshold choice (two stages, per class, N-stage cascades).

    Every subclass has these attributes, with these types:

    ``thresholds`` : list
        One threshold per non-last stage (a float, or a per-class array in column order).
    ``feasible`` : bool
        Whether the objective was met (and certified, when ``delta`` was given).
    ``guaranteed`` : float
        The certified bound on the constrained quantity at the chosen thresholds (``nan`` when
        nothing is certified: an empirical choice, or a certificate that failed).
    ``procedure`` : str
        The selection or certification procedure that produced the choice.
    ``assumption`` : str
        What the guarantee assumes of the calibration data (e.g. exchangeable rows); empty for an
        empirical choice.
    ``objective`` : str, ``target`` : float, ``delta`` : float or None
    ``wording`` : str, ``sense`` : {">=", "<="}, ``figure_format`` : {"pct", "num"}
        How the objective is said and shown: its name in text, whether the target (and the
        certified bound) is a floor or a ceiling, and how its figures are formatted. Read from the
        objective table of :mod:`confroute.selection.objectives` (this layer is below it, so the
        displays here read these attributes, never the table).
    ``to_dict()`` / ``from_dict(d)``
        A JSON-ready round trip.
    """

    #: Marks the class as a threshold choice for :func:`stage_thresholds`.
    is_threshold_choice: ClassVar[bool] = True

    thresholds: list[Any]
    feasible: bool
    guaranteed: float
    procedure: str
    assumption: str

    @property
    def wording(self) -> str:  # pragma: no cover - every subclass defines it
        """The objective's name in text and HTML displays (``"system accuracy"``, ...)."""
        raise NotImplementedError

    @property
    def sense(self) -> str:  # pragma: no cover - every subclass defines it
        """``">="`` when the target is a floor (accuracy, coverage, savings), ``"<="`` a ceiling (cost)."""
        raise NotImplementedError

    @property
    def figure_format(self) -> str:  # pragma: no cover - every subclass defines it
        """``"pct"`` (a share) or ``"num"`` (a price): how the target and the bound are shown."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Choice:  # pragma: no cover - every subclass defines it
        raise NotImplementedError


def stage_thresholds(value: Any, where: str = "thresholds") -> Any:
    """The thresholds a router or :meth:`Evaluation.at` should read from ``value``.

    A :class:`Choice` gives its ``thresholds`` (one per non-last stage). Anything else that
    carries thresholds of another meaning is refused: an evaluation or a sweep has one threshold
    per table row, and reading those as per-stage or per-class thresholds would give a silently
    wrong operating point. Numbers, sequences and mappings are returned unchanged for the
    caller's own checks.

    Examples
    --------
    >>> stage_thresholds([0.8])
    [0.8]
    >>> class Table:
    ...     row_thresholds = np.array([np.inf, 0.9, 0.5])
    >>> stage_thresholds(Table())
    Traceback (most recent call last):
    ...
    TypeError: thresholds: got a Table, which holds one threshold per table row, not one per stage; \
choose with confroute.choose_thresholds(...) and pass the choice, or give the thresholds as numbers
    """
    if isinstance(value, Choice) or getattr(type(value), "is_threshold_choice", False) is True:
        return list(value.thresholds)
    if hasattr(value, "row_thresholds") or (
        hasattr(value, "thresholds") and not isinstance(value, (Mapping, np.ndarray, list, tuple))
    ):
        raise TypeError(
            f"{where}: got a {type(value).__name__}, which holds one threshold per table row, not one per "
            "stage; choose with confroute.choose_thresholds(...) and pass the choice, or give the "
            "thresholds as numbers"
        )
    return value
