"""Paired bounds: how much worse the routed system is than the last stage alone, from the inputs
where they disagree.

The routed system and the reference (the last stage) differ only on inputs some earlier stage
answers *and* on which the two disagree, so per input the difference is ``G_i - L_i`` with ``L_i`` =
"answered early, the early stage wrong, the reference right" (a loss) and ``G_i`` the reverse (a
gain). Agreements carry no information and need no label (McNemar 1947).

``"cp_losses"``
    Clopper–Pearson upper bound on the losses, ignoring gains. Difference: ``L`` out of ``n``
    against ``epsilon``. Ratio: ``L`` out of the ``F`` inputs the reference gets right, against
    ``epsilon`` (exact given which inputs those are; no split of ``delta``).
``"conditional"``
    Uses gains too: the discordance rate and the share of losses among the discordant inputs get
    Clopper–Pearson bounds at ``delta / 2`` each; for a ratio, ``epsilon`` is multiplied by a lower
    bound on the reference's accuracy at ``delta / 10``.

References
----------
Clopper & Pearson (1934). Biometrika 26(4).
McNemar (1947). Psychometrika 12(2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bounds import clopper_pearson, fixed_sequence
from .certificate import PAIRED_BOUNDS, REFERENCE_SHARE, check_bool

__all__ = ["select_paired", "paired_drop_upper", "paired_counts", "paired_margin"]


def paired_margin(
    kind: str, epsilon: float, delta: float, n: Any, fallback_correct: Any, reference_lower: Any
) -> tuple[np.ndarray, float, np.ndarray | None]:
    """The drop allowed (``epsilon`` or ``epsilon`` x a lower bound on the reference accuracy),
    the level left for the tests, and that lower bound."""
    if kind == "difference":
        return np.asarray(epsilon, dtype=np.float64), delta, None
    if kind != "ratio":
        raise ValueError(f"kind must be 'ratio' or 'difference', got {kind!r}")
    if reference_lower is not None:
        lb = np.asarray(reference_lower, dtype=np.float64)
        return epsilon * lb, delta, lb
    if fallback_correct is None:
        raise ValueError("a ratio target needs the reference's correct count (or reference_lower=)")
    lb = clopper_pearson(fallback_correct, n, delta * REFERENCE_SHARE, "lower")
    return epsilon * lb, delta * (1 - REFERENCE_SHARE), lb


def select_paired(
    L: Any, G: Any, n: int, epsilon: float, delta: float, *, kind: str = "difference",
    bound: str = "cp_losses", fallback_correct: Any = None, reference_lower: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loosest certified row for a paired relative target, from loss and gain counts.

    Parameters
    ----------
    L, G : arrays of int, shape (..., H)
        Per candidate (strict to loose; row 0 answers nothing early): inputs answered early
        where the early stage is wrong and the reference right (``L``), and the reverse (``G``).
    n : int
        Calibration inputs.
    epsilon : float
        Allowed drop (difference) or relative drop (ratio).
    delta : float
    kind : {"difference", "ratio"}
    bound : {"cp_losses", "conditional"}
    fallback_correct : int or array of shape (...), optional
        The reference's correct count ``F`` among the ``n`` (ratio targets).
    reference_lower : float or array, optional
        Ratio targets when ``F`` is unknown (labels on disagreements only): a lower bound on the
        reference's accuracy established elsewhere; the allowed drop is ``epsilon`` times it.

    Returns
    -------
    row : array of int, shape (...)
    drop_upper : array of float, shape (...)
        At that row, an upper bound on ``P(L) - P(G)`` (difference) or on the relative drop
        ``(P(L) - P(G)) / P(reference right)`` (ratio); 0 at row 0.

    Notes
    -----
    Ratio with ``"cp_losses"`` and ``F`` known is exact without splitting ``delta``: given which
    inputs the reference gets right, the losses are ``Binomial(F, r)`` with ``r = P(loss |
    reference right)``, and ``r <= epsilon`` implies ``P(L) - P(G) <= epsilon x P(reference
    right)``. So the test is Clopper–Pearson on ``L`` out of ``F`` against ``epsilon``.

    Examples
    --------
    >>> L = np.array([0, 0, 0, 1, 2, 4])   # losses as the threshold loosens
    >>> G = np.array([0, 0, 1, 1, 1, 1])
    >>> row, up = select_paired(L, G, 1000, 0.005, 0.05)
    >>> int(row), round(float(up), 4)      # 1 loss in 1000 passes; 2 do not
    (3, 0.0047)
    """
    L = np.asarray(L, dtype=np.float64)
    G = np.asarray(G, dtype=np.float64)
    if kind not in ("ratio", "difference"):
        raise ValueError(f"kind must be 'ratio' or 'difference', got {kind!r}")
    if bound not in ("cp_losses", "conditional"):
        raise ValueError(f"bound must be 'cp_losses' or 'conditional' here, got {bound!r}")
    if kind == "ratio" and bound == "cp_losses" and reference_lower is None:
        if fallback_correct is None:
            raise ValueError("a ratio target needs the reference's correct count (or reference_lower=)")
        F = np.asarray(fallback_correct, dtype=np.float64)[..., None]
        up = clopper_pearson(L, np.broadcast_to(F, L.shape), delta, "upper")
    else:
        _, level, lb = paired_margin(kind, epsilon, delta, n, fallback_correct, reference_lower)
        up = paired_drop_upper(L, G, n, level, bound)
        if lb is not None:
            up = up / np.maximum(np.asarray(lb, dtype=np.float64), 1e-300)[..., None]
    run = fixed_sequence(up[..., 1:] <= epsilon + 1e-15)
    row = run  # rows 1..run are certified
    at = np.take_along_axis(up, row[..., None], axis=-1)[..., 0]
    return row, np.where(row > 0, at, 0.0)


def paired_drop_upper(L: Any, G: Any, n: int, level: float, bound: str = "cp_losses") -> np.ndarray:
    """Upper confidence bound (at ``level``) on ``P(L) - P(G)`` for each candidate.

    Examples
    --------
    >>> [round(float(x), 4) for x in paired_drop_upper([0, 3], [0, 3], 872, 0.05, "conditional")]
    [0.0042, 0.0114]
    """
    L = np.asarray(L, dtype=np.float64)
    G = np.asarray(G, dtype=np.float64)
    if bound == "cp_losses":
        return clopper_pearson(L, n, level, "upper")
    if bound == "conditional":
        D = L + G
        pi_u = clopper_pearson(D, n, level / 2, "upper")
        q_u = np.where(D > 0, clopper_pearson(L, np.maximum(D, 1), level / 2, "upper"), 1.0)
        return pi_u * np.maximum(2 * q_u - 1, 0.0)
    raise ValueError(f"bound must be one of {PAIRED_BOUNDS}, got {bound!r}")



def paired_counts(answered_by: Any, stage_correct: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss and gain counts, and coverage, for each candidate of a cascade.

    Parameters
    ----------
    answered_by : array of int, shape (H, n)
        Which stage answers each input under each candidate (the last stage is the reference).
    stage_correct : array of bool, shape (S, n)

    Returns
    -------
    L, G : arrays of int, shape (H,)
    coverage : array of float, shape (H,)
        Share answered before the last stage.

    Examples
    --------
    >>> correct = np.array([[1, 0, 1, 1], [1, 1, 0, 1]], bool)   # cheap, reference
    >>> L, G, cov = paired_counts([[1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]], correct)
    >>> L.tolist(), G.tolist(), cov.tolist()
    ([0, 1, 1], [0, 1, 1], [0.0, 0.75, 1.0])
    """
    c = check_bool(stage_correct, "stage_correct")
    if c.ndim != 2 or c.shape[0] < 2:
        raise ValueError(f"stage_correct must have shape (stages >= 2, n), got {c.shape}")
    a = np.asarray(answered_by)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != c.shape[1]:
        raise ValueError(f"answered_by must have shape (candidates, {c.shape[1]}), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer) or a.min(initial=0) < 0 or a.max(initial=0) >= c.shape[0]:
        raise ValueError(f"answered_by must hold stage indices 0..{c.shape[0] - 1}")
    last = c.shape[0] - 1
    early = a != last
    ans_ok = c[a, np.arange(c.shape[1])]
    ref = c[last]
    L = (early & ~ans_ok & ref).sum(axis=1)
    G = (early & ans_ok & ~ref).sum(axis=1)
    return L, G, early.mean(axis=1)

