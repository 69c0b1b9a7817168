"""The decision rule, in one place: which stage answers an input.

A stage *accepts* an input when its confidence score reaches the stage's threshold,
``score >= threshold``; the threshold is one number, or one per class, looked up by the class
the stage predicted. Stage ``s`` answers the inputs that every earlier stage deferred and that
it accepts; the last stage answers whatever reaches it.

:func:`accepts` is that rule for one stage; :func:`answering_stage` folds it over a cascade on
precomputed arrays. The router (one stage at a time, on the inputs that reached it), evaluation
at a threshold, per-class selection, drift monitoring, Ray and the cascade search all call
these two functions, so they cannot disagree. :func:`threshold_path` is the same rule walked
along every candidate threshold at once (the sweep, the certificates and the risk-coverage
metrics count along it); it asks :func:`accepts` whether a score equal to the threshold is
accepted, so a change of the rule changes the path too.

Callers use the rule through this module (``decision.accepts(...)``), never a copy of the
comparison: a test replaces :func:`accepts` and checks that every path follows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import ClassMismatchError
from .classes import Classes, label_indices

__all__ = [
    "ThresholdSpec",
    "check_threshold",
    "resolve_threshold",
    "accepts",
    "accepts_broadcast",
    "ties_accepted",
    "threshold_path",
    "answering_stage",
]

#: A stage's threshold as a user gives it: a number, one number per class (in column order),
#: or a mapping from class value to number.
ThresholdSpec = float | Sequence[float] | np.ndarray | Mapping[Any, float]


def _number(v: Any, what: str, lo: float, hi: float) -> float:
    if isinstance(v, (bool, np.bool_)) or isinstance(v, (str, bytes)):
        raise TypeError(f"{what} must be a number, got {v!r}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {v!r}") from None
    # +inf is always allowed: "this stage accepts nothing" (a threshold search may choose it).
    if math.isnan(x) or not (lo <= x <= hi or x == math.inf):
        raise ValueError(f"{what} must lie in the score's range [{lo}, {hi}] (or be inf), got {x}")
    return x


def check_threshold(
    t: Any, score_range: tuple[float, float] | None = None, where: str = "threshold"
) -> float | np.ndarray | dict[Any, float]:
    """Validate a threshold as given (number, per-class sequence or class mapping).

    Booleans, strings and NaN are refused; values must lie in the score's range (or be
    ``inf``). Returns a float, a 1-D float array or a dict.

    Examples
    --------
    >>> check_threshold(0.8, (0.0, 1.0))
    0.8
    >>> check_threshold("0.8", (0.0, 1.0))
    Traceback (most recent call last):
    ...
    TypeError: threshold must be a number, got '0.8'
    """
    lo, hi = score_range or (-math.inf, math.inf)
    if isinstance(t, Mapping):
        if not t:
            raise ValueError(f"{where}: a per-class mapping needs at least one class")
        return {k: _number(v, f"{where} for class {k!r}", lo, hi) for k, v in t.items()}
    if isinstance(t, (str, bytes)) or np.ndim(t) == 0:
        return _number(t, where, lo, hi)
    values = list(t)
    if np.ndim(values) != 1 or not values:
        raise ValueError(f"{where}: per-class thresholds must be a non-empty 1-D sequence, got {t!r}")
    return np.array([_number(v, f"{where} for class {c}", lo, hi) for c, v in enumerate(values)])


def resolve_threshold(
    t: float | np.ndarray | Mapping[Any, float], classes: Classes | None, n_classes: int, where: str = "stage"
) -> float | np.ndarray:
    """A checked threshold as a float or an array with one entry per column.

    A mapping is matched to the classes by value, like labels; it must name every class.
    """
    if isinstance(t, float):
        return t
    if isinstance(t, Mapping):
        keys = list(t)
        if classes is None:
            raise ValueError(f"{where}: thresholds by class name need a stage that names its classes")
        known = set(classes)
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise ClassMismatchError(
                f"{where}: thresholds name unknown classes {unknown}; the classes are {list(classes)}"
            )
        idx = label_indices(keys, classes, n_classes, what=f"{where}: per-class thresholds", owner=where)
        if len(set(idx.tolist())) != n_classes:
            named = set(idx.tolist())
            missing = [c for i, c in enumerate(classes or range(n_classes)) if i not in named]
            raise ValueError(f"{where}: no threshold for classes {missing}")
        out = np.empty(n_classes)
        out[idx] = [t[k] for k in keys]
        return out
    arr = np.asarray(t, dtype=np.float64)
    if arr.shape != (n_classes,):
        raise ValueError(f"{where}: {arr.size} per-class thresholds for {n_classes} classes")
    return arr


def accepts(scores: np.ndarray, predicted_index: np.ndarray | None, threshold: float | np.ndarray) -> np.ndarray:
    """The rule: ``score >= threshold`` (the threshold of the predicted class when per-class).

    Examples
    --------
    >>> accepts(np.array([0.9, 0.6, 0.7]), np.array([0, 1, 1]), np.array([0.95, 0.5])).tolist()
    [False, True, True]
    """
    s = np.asarray(scores, dtype=np.float64)
    if isinstance(threshold, np.ndarray) and threshold.ndim == 1:
        if predicted_index is None:
            raise ValueError("per-class thresholds need the stage's predicted classes")
        return accepts_broadcast(s, threshold[np.asarray(predicted_index, dtype=np.int64)])
    return accepts_broadcast(s, float(threshold))


def accepts_broadcast(scores: np.ndarray | float, thresholds: np.ndarray | float) -> np.ndarray:
    """The same rule with numpy broadcasting: a threshold per input, or a whole ladder at once.

    ``accepts_broadcast(scores[None, :], ladder[:, None])`` is the (rungs, inputs) matrix of
    :func:`accepts` at every rung (simulations, certificates over a ladder).

    Examples
    --------
    >>> accepts_broadcast(np.array([0.5, 0.9])[None, :], np.array([0.5, 0.95])[:, None]).tolist()
    [[True, True], [False, False]]
    """
    return np.asarray(np.asarray(scores, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64))


def answering_stage(
    scores: Sequence[np.ndarray] | np.ndarray,
    thresholds: Sequence[float | np.ndarray],
    predicted_index: Sequence[np.ndarray] | np.ndarray | None = None,
) -> np.ndarray:
    """Index of the stage that answers each input, for one threshold per non-last stage.

    Parameters
    ----------
    scores : N-1 arrays of shape (n,)
        Each non-last stage's score on every input.
    thresholds : N-1 floats or per-class arrays (already resolved to column order)
    predicted_index : N-1 arrays of shape (n,), optional
        Each stage's predicted column; needed for per-class thresholds.

    Returns
    -------
    ndarray of int, shape (n,)
        ``s`` for inputs stage ``s`` answers; ``N - 1`` for those the last stage answers.

    Examples
    --------
    >>> answering_stage([np.array([0.9, 0.5, 0.2]), np.array([0.8, 0.9, 0.1])], [0.8, 0.85]).tolist()
    [0, 1, 2]
    """
    n_stages = len(thresholds) + 1
    if len(scores) != n_stages - 1:
        raise ValueError(f"{n_stages} stages need {n_stages - 1} score arrays, got {len(scores)}")
    n = int(np.asarray(scores[0]).shape[0]) if n_stages > 1 else 0
    stage = np.full(n, n_stages - 1, dtype=np.int64)
    pending = np.ones(n, dtype=bool)
    for s, t in enumerate(thresholds):
        pred = None if predicted_index is None else predicted_index[s]
        take = pending & accepts(scores[s], pred, t)
        stage[take] = s
        pending &= ~take
    return stage


def ties_accepted() -> bool:
    """Whether :func:`accepts` accepts a score equal to the threshold (it does: ``>=``).

    :func:`threshold_path` reads this from the rule itself rather than assuming it.

    >>> ties_accepted()
    True
    """
    return bool(accepts(np.ones(1), None, 1.0)[0])


def threshold_path(scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every candidate threshold of one stage, strict to loose, and how to count along them.

    The one "sort scores, group ties, count along the path" of the library: the threshold sweep,
    the certificates and the risk-coverage metrics all walk it.

    Returns
    -------
    thresholds : ndarray, shape (m + 1,)
        ``thresholds[0]`` accepts nothing; then one threshold per distinct score, each accepting
        one more group of tied scores, down to accepting every input. With the rule
        ``score >= t`` these are ``inf`` and then the distinct scores, descending.
    order : ndarray of int
        Sorts the inputs by descending score (stable).
    ends : ndarray of int, shape (m + 1,)
        The inputs accepted at row ``h`` are ``order[:ends[h]]``; counts of a per-input
        indicator ``x`` at every row are ``np.r_[0, np.cumsum(x[order])][ends]``.

    Examples
    --------
    >>> t, order, ends = threshold_path([0.9, 0.6, 0.9, 0.7])
    >>> t.tolist(), ends.tolist()
    ([inf, 0.9, 0.7, 0.6], [0, 2, 3, 4])
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; a NaN score can be neither accepted nor deferred")
    infinite = np.flatnonzero(np.isinf(s))
    if infinite.size:
        raise ValueError(f"score is not finite for input {int(infinite[0])} ({s[infinite[0]]}); routing refuses "
                         "non-finite scores, so no threshold can be chosen on them")
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    last_of_tie = np.r_[ss[1:] != ss[:-1], True] if ss.size else np.zeros(0, bool)
    ends = np.r_[0, np.flatnonzero(last_of_tie) + 1]
    distinct = ss[last_of_tie]
    if ties_accepted():
        thresholds = np.r_[np.inf, distinct]
    else:  # a strict rule: the next lower distinct score accepts a group; -inf accepts all
        thresholds = np.r_[distinct, -np.inf]
    return thresholds, order, ends
