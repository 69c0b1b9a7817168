"""What the monitor records of a routed batch, and its random draws (see
:class:`~confroute.monitoring.CertificateMonitor`)."""

from __future__ import annotations

import numpy as np

from ..core.types import RoutingResult
from .records import label_probability

__all__ = ["plan_records", "uniform_draws"]


def plan_records(result: RoutingResult, pos0: int, seed: int, audit_rate: float,
                 design: dict[str, float] | None) -> dict[str, np.ndarray]:
    """What the monitor records for a routed batch: per input its first-stage score and answer,
    the fallback's answer where the fallback ran, whether it is sampled for a shadow call (only
    inputs the first stage accepted, with probability ``audit_rate``; and deferred inputs the
    fallback failed on, to try again) and the probability of the fallback being called, and
    which inputs get a label request at once: the deferred inputs whose fallback answer is known,
    each with the probability of :func:`~confroute.monitoring.sequential.label_probability`
    (``design``: its keyword arguments; None: no labels). Draws depend on ``(seed, position)`` only."""
    n = len(result)
    pos = np.arange(pos0, pos0 + n, dtype=np.uint64)
    primary = result.stage_label_index[0].astype(np.int64)
    fallback = result.stage_label_index[1].astype(np.int64)
    deferred = result.reached[1] & (primary >= 0)
    accepted = ~result.reached[1] & (primary >= 0)
    sampled = accepted & (uniform_draws(seed, pos, 1) < audit_rate)
    sampled |= deferred & (fallback < 0)  # the fallback failed on it: retried as a shadow call
    p_fallback = np.where(deferred, 1.0, audit_rate)
    known = deferred & (fallback >= 0)
    p_label = np.full(n, np.nan)
    if design is None:
        p_label[known] = 0.0
    elif known.any():
        p_label[known] = label_probability(
            result.stage_scores[0][known], primary[known], fallback[known], np.zeros(int(known.sum()), dtype=bool),
            **design)
    requested = known & (uniform_draws(seed, pos, 2) < np.nan_to_num(p_label))
    return {"score": result.stage_scores[0], "primary": primary, "fallback": np.where(known, fallback, -1),
            "sampled": sampled, "p_fallback": p_fallback, "requested": requested, "p_label": p_label}


def uniform_draws(seed: int, pos: np.ndarray, salt: int) -> np.ndarray:
    """Uniform draws in [0, 1) from ``(seed, position, salt)`` (splitmix64): the same position
    always gets the same draw, however the stream is batched or restarted."""
    with np.errstate(over="ignore"):
        x = pos.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed % 2**63) * np.uint64(
            0xBF58476D1CE4E5B9) + np.uint64(salt * 0x94D049BB133111EB % 2**64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)
