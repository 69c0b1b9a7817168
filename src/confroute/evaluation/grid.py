"""Counting on a grid of thresholds: the engine behind N-stage evaluation.

A cascade of ``N`` stages has ``N - 1`` thresholds. Routing is deterministic given the per-stage
scores, so every stage runs once on every input and the rest is array work:

* each non-last stage ``s`` gets a grid of candidate thresholds: ``grid`` quantiles of its own
  scores (the actual score values, so every candidate is a distinct accept set) plus ``+inf``
  ("accept nothing at this stage");
* for every combination of grid values (``G^(N-1)`` of them) :func:`cascade_counts` gives the
  number of inputs each stage answers and how many of those answers are right, with matrix
  products over 0/1 masks: for a prefix of thresholds, the mask of inputs still pending times the
  mask of inputs stage ``s`` accepts gives, in one ``(combos, n) @ (n, G)`` product, how many
  inputs stage ``s`` answers for every extension of the prefix. Inputs are processed in chunks
  and counts added up, so memory stays at about ``G^(N-1) x chunk`` numbers.

References
----------
Viola & Jones (2001). Rapid object detection using a boosted cascade of simple features. CVPR
(cascades of increasingly expensive stages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import decision

__all__ = ["cascade_counts", "quantile_grid", "grids_for"]

#: Upper bound on the numbers held at once by :func:`cascade_counts` (pending masks, float32).
_MAX_CELLS = 1 << 23


# --------------------------------------------------------------------------- the vectorised core
def quantile_grid(scores: Any, size: int = 20) -> np.ndarray:
    """Candidate thresholds for one stage: ``size`` quantiles of its scores, plus ``+inf``.

    The quantiles are taken with ``method="lower"`` so each candidate is an actual score (a
    distinct accept set); duplicates are dropped. Returned strictest first (``inf`` first).

    Examples
    --------
    >>> quantile_grid([0.1, 0.2, 0.3, 0.4, 0.5], size=3).tolist()
    [inf, 0.5, 0.3, 0.1]
    """
    s = np.asarray(scores, dtype=np.float64)
    if size < 1:
        raise ValueError(f"grid size must be >= 1, got {size}")
    if s.size == 0:
        return np.array([np.inf])
    q = np.quantile(s, np.linspace(0.0, 1.0, size), method="lower") if size > 1 else np.array([s.min()])
    return np.r_[np.inf, np.unique(q)[::-1]]


def cascade_counts(
    scores: Sequence[np.ndarray],
    correct: Sequence[np.ndarray],
    grids: Sequence[np.ndarray],
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs answered by each stage and correct answers, for every threshold combination.

    Parameters
    ----------
    scores : N-1 arrays of shape (n,)
        Score of each non-last stage on every input.
    correct : N arrays of bool, shape (n,)
        Whether each stage is right on every input.
    grids : N-1 arrays
        Candidate thresholds per non-last stage (accept when ``score >= threshold``).
    weights : array of shape (n,), optional
        Count input ``i`` this many times (default 1).

    Returns
    -------
    answered : ndarray of shape (M, N)
        With ``M = prod(len(g) for g in grids)``: rows in lexicographic order of the grid
        indices (the first stage's index varies slowest), as ``itertools.product`` gives them.
    correct_answers : ndarray of shape (M, N)
        Correct answers given by each stage.

    Examples
    --------
    >>> ans, ok = cascade_counts([np.array([0.9, 0.2])], [np.array([True, False]),
    ...                          np.array([True, True])], [np.array([0.5, 0.1])])
    >>> ans.tolist(), ok.tolist()
    ([[1, 1], [2, 0]], [[1, 1], [1, 0]])
    """
    n_stages = len(correct)
    if len(scores) != n_stages - 1 or len(grids) != n_stages - 1:
        raise ValueError(f"{n_stages} stages need {n_stages - 1} score arrays and grids")
    grids = [np.asarray(g, dtype=np.float64).reshape(-1) for g in grids]
    n = int(np.asarray(correct[0]).shape[0])
    m_total = int(np.prod([g.size for g in grids])) if grids else 1
    w = np.ones(n, dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    answered = np.zeros((m_total, n_stages), dtype=np.float64)
    n_correct = np.zeros((m_total, n_stages), dtype=np.float64)
    # Counts are sums over inputs, so chunks of inputs add up; the chunk shrinks as combos grow.
    chunk = max(1, min(max(n, 1), _MAX_CELLS // max(m_total, 1)))
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        a, c = _counts_chunk([np.asarray(s)[sl] for s in scores],
                             [np.asarray(c)[sl] for c in correct], grids, w[sl])
        answered += a
        n_correct += c
    if weights is None:
        return np.rint(answered).astype(np.int64), np.rint(n_correct).astype(np.int64)
    return answered, n_correct


def _counts_chunk(
    scores: list[np.ndarray], correct: list[np.ndarray], grids: list[np.ndarray], w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # float64 keeps weighted sums exact enough; 0/1 masks times weights. The accept masks are the
    # decision rule, confroute.core.decision.accepts, called for every grid value.
    pending = w[None, :].astype(np.float64)  # (combos so far, b): weight of inputs still pending
    answered: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for s, grid in enumerate(grids):
        accept = np.stack([decision.accepts(scores[s], None, float(t)) for t in grid]).astype(np.float64)  # (G, b)
        g = grid.size
        answered_s = pending @ accept.T  # (M, G)
        correct_s = pending @ (accept * correct[s][None, :]).T
        answered = [np.repeat(a, g) for a in answered]
        right = [np.repeat(c, g) for c in right]
        answered.append(answered_s.ravel())
        right.append(correct_s.ravel())
        pending = (pending[:, None, :] * (1.0 - accept)[None, :, :]).reshape(-1, pending.shape[1])
    answered.append(pending.sum(axis=1))
    right.append(pending @ correct[-1].astype(np.float64))
    return np.stack(answered, axis=1), np.stack(right, axis=1)


def grids_for(grid: int | Sequence[Any], scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Candidate thresholds per non-last stage: ``grid`` quantiles of its scores (an int), or the
    candidate values themselves (one array per stage)."""
    if isinstance(grid, (int, np.integer)):
        return [quantile_grid(s, int(grid)) for s in scores]
    grids = [np.asarray(g, dtype=np.float64).reshape(-1) for g in grid]
    if len(grids) != len(scores):
        raise ValueError(f"give one threshold grid per non-last stage ({len(scores)}), got {len(grids)}")
    for i, g in enumerate(grids):
        if g.size == 0 or np.isnan(g).any():
            raise ValueError(f"threshold grid of stage {i} must be non-empty and free of NaN")
    return grids
