"""What a certificate is: the result type of every certification procedure, and its shared vocabulary.

The procedures themselves live in :mod:`.accepted` (accuracy on accepted inputs), :mod:`.paired`
and :mod:`.relative` (paired relative accuracy), :mod:`.planner` (label budgets) and
:mod:`.disagreements` (labels on disagreements only); :mod:`.certify` is their overview.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core._json import json_value

__all__ = [
    "Certificate",
    "ACCEPTED_METHODS",
    "PAIRED_BOUNDS",
    "EARLY_WEIGHT",
    "RESTART_WEIGHT",
    "MAIN_START",
    "REFERENCE_SHARE",
    "check_bool",
    "path_counts",
]

ACCEPTED_METHODS = ("fallback", "single", "multistart", "split", "betting")
PAIRED_BOUNDS = ("cp_losses", "conditional", "betting")
#: The default fallback procedure's layout (chosen with benchmarks/bench_certify.py): share of
#: delta on the early chain, on the restarts, and the main start as a share of n.
EARLY_WEIGHT = 0.4
RESTART_WEIGHT = 0.1
MAIN_START = 0.1
#: Share of delta spent on the reference's accuracy for a ratio target.
REFERENCE_SHARE = 0.1



def jsonable(value: Any) -> Any:
    """A field of a certificate as JSON (tuples become lists; non-finite numbers ``None``)."""
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    return json_value(value)


@dataclass(frozen=True)
class Certificate:
    """What a certification procedure established on calibration data.

    Attributes
    ----------
    objective : str
        ``"accepted_accuracy"``, ``"relative_accuracy"`` (ratio) or ``"accuracy_drop"``
        (difference).
    method : str
        The combination rule or bound used.
    target : float
        Accuracy target, or ``epsilon`` for relative objectives.
    delta : float
    certified : bool
        False when no candidate could be certified; then ``index`` is 0 (accept nothing).
    index : int
        Row of the chosen candidate (0: the strictest, "accept nothing").
    threshold : float or tuple or None
        The chosen candidate (a threshold, or whatever the caller passed as candidates).
    coverage : float
        Share of calibration inputs answered before the last stage at that candidate.
    empirical : float
        The objective's figure on the calibration data (accepted accuracy; system minus
        reference accuracy; or their ratio).
    bound : float or None
        A lower bound on that figure at the chosen candidate, at the level it was tested at
        (``None`` for betting).
    n : int
        Calibration inputs.
    labels_used : int
        Labels the certificate depends on (all inputs, or only the disagreements).
    reason : str or None
        Why nothing (more) could be certified: too few inputs, too many errors or losses.
    labels_needed : int or None
        When nothing was certified: the planner's estimate of the labelled inputs needed to
        certify the first candidate that failed (``None`` when its rates cannot reach the target).
    random_state : int or None
        The seed of the random order a betting certificate read the rows in
        (:func:`~confroute.selection.bounds.betting_order`); rerun with it to reproduce the
        certificate. ``None`` for the procedures that do not depend on the row order.
    assumption : str
        What the guarantee assumes about the calibration rows, in one sentence.
    """

    objective: str
    method: str
    target: float
    delta: float
    certified: bool
    index: int
    threshold: Any
    coverage: float
    empirical: float
    bound: float | None
    n: int
    labels_used: int
    reason: str | None = None
    labels_needed: int | None = None
    random_state: int | None = None
    assumption: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (non-finite numbers become ``None``)."""
        return {k: jsonable(v) for k, v in self.__dict__.items()}




#: What every certificate assumes about its calibration rows (shown on choices and in the docs).
EXCHANGEABLE = ("The guarantee assumes the calibration rows are exchangeable (e.g. drawn i.i.d. from the "
                "traffic being routed); the order they are passed in does not matter.")


def assumption_text(random_state: int | None = None) -> str:
    """The one-sentence assumption of a certificate (with the seed of a betting certificate).

    Examples
    --------
    >>> assumption_text(0).endswith("(random_state=0).")
    True
    """
    if random_state is None:
        return EXCHANGEABLE
    return (EXCHANGEABLE[:-1] + ": the betting test reads them in a seeded random order "
            f"(random_state={random_state}).")


def path_counts(x: np.ndarray, order: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Counts of a per-input indicator at every row of :func:`confroute.core.decision.threshold_path`."""
    return np.r_[0, np.cumsum(x[order])][ends]


def check_bool(x: Any, name: str, n: int | None = None) -> np.ndarray:
    """``x`` as a boolean array (0/1 accepted), with ``n`` inputs on its last axis when given."""
    a = np.asarray(x)
    if a.dtype != bool:
        if a.size and not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1), got values outside {{0, 1}}")
        a = a.astype(bool)
    if n is not None and a.shape[-1] != n:
        raise ValueError(f"{name} has {a.shape[-1]} inputs, expected {n}")
    return a

