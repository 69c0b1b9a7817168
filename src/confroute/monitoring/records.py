"""The records a monitor keeps of a stream, and the labelling design (see :mod:`.sequential`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import decision

__all__ = ["StreamRecords", "label_probability", "stream_ladder", "LADDER_WARMUP"]

#: Rows at the head of a stream whose scores make the default ladder (and are not tested).
LADDER_WARMUP = 1000

_FIELDS = ("score", "primary", "fallback", "audited", "p_fallback", "label", "label_requested", "p_label")
_DTYPES = (np.float64, np.int64, np.int64, bool, np.float64, np.int64, bool, np.float64)


@dataclass(frozen=True)
class StreamRecords:
    """What the monitor saw, one row per routed input, in arrival order (arrays of equal length).

    Attributes
    ----------
    score : float64
        The first stage's routing score.
    primary : int64
        The first stage's label index.
    fallback : int64
        The fallback's label index; ``-1`` where unknown (accepted and not audited, or the call
        failed).
    audited : bool
        Whether the fallback was called on this input (deferred inputs, and accepted inputs
        drawn for a shadow call), whether or not the call succeeded. ``audited & (fallback == -1)``
        is a failed call: it counts as the worst case, never as "not sampled".
    p_fallback : float64
        The probability, fixed BEFORE the input was seen, that the fallback is called on it:
        1.0 when deferred, the audit rate when accepted. It may change over time (a new audit
        rate, a new deployed threshold) but never with the input's own outcome.
    label : int64
        The true label index; ``-1`` where unknown (not requested, or pending).
    label_requested : bool
    p_label : float64
        The probability a label is requested given the fallback's answer was observed, as
        given by :func:`label_probability` (1.0 for an accepted input's disagreement).

    Examples
    --------
    >>> r = StreamRecords.from_columns(score=[0.9, 0.4], primary=[1, 0], fallback=[-1, 1],
    ...                                audited=[False, True], p_fallback=[0.25, 1.0], label=[-1, 1],
    ...                                label_requested=[False, True], p_label=[0.0, 1.0])
    >>> len(r), r.fallback.dtype.name
    (2, 'int64')
    """

    score: np.ndarray
    primary: np.ndarray
    fallback: np.ndarray
    audited: np.ndarray
    p_fallback: np.ndarray
    label: np.ndarray
    label_requested: np.ndarray
    p_label: np.ndarray

    def __post_init__(self) -> None:
        n = None
        for name, dt in zip(_FIELDS, _DTYPES):
            a = np.asarray(getattr(self, name)).astype(dt, copy=False).reshape(-1)
            if n is None:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise ValueError(f"StreamRecords: {name} has {a.shape[0]} rows, score has {n}")
            object.__setattr__(self, name, a)
        if n and (np.any(self.p_fallback <= 0) or np.any(self.p_fallback > 1)):
            raise ValueError("StreamRecords: p_fallback must be in (0, 1]")
        if n and (np.any(self.p_label < 0) or np.any(self.p_label > 1)):
            raise ValueError("StreamRecords: p_label must be in [0, 1]")
        if n and np.any(self.label_requested & (self.p_label <= 0)):
            raise ValueError("StreamRecords: a label was requested where p_label is 0")
        if n and np.any((self.label >= 0) & ~self.label_requested):
            raise ValueError("StreamRecords: a label was recorded that was never requested")
        if n and np.any(self.label_requested & ~(self.audited & (self.fallback >= 0))):
            raise ValueError("StreamRecords: labels are requested only where the fallback's answer is known")

    def __len__(self) -> int:
        return int(self.score.shape[0])

    @classmethod
    def from_columns(cls, **columns: Any) -> StreamRecords:
        """Records from keyword columns (lists or arrays), converted to the field types."""
        return cls(**{k: columns[k] for k in _FIELDS})

    def head(self, n: int) -> StreamRecords:
        """The first ``n`` rows."""
        return StreamRecords(*(getattr(self, k)[:n] for k in _FIELDS))

    def tail(self, start: int) -> StreamRecords:
        """The rows from ``start`` on (e.g. a new certificate after an alarm)."""
        return StreamRecords(*(getattr(self, k)[start:] for k in _FIELDS))

    @classmethod
    def concat(cls, parts: Sequence[StreamRecords]) -> StreamRecords:
        """The rows of ``parts`` one after the other."""
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in _FIELDS))

    def evidence(self) -> dict[str, int]:
        """Counts of what was seen: inputs, fallback calls, disagreements, labels, failures."""
        obs = self.audited & (self.fallback >= 0)
        got = self.label >= 0
        return {
            "n_seen": len(self),
            "n_audited": int(self.audited.sum()),
            "n_shadow": int((self.audited & (self.p_fallback < 1)).sum()),
            "n_disagreements": int((obs & (self.fallback != self.primary)).sum()),
            "labels_requested": int(self.label_requested.sum()),
            "labels_received": int(got.sum()),
            "labels_pending": int((self.label_requested & ~got).sum()),
            "shadow_failures": int((self.audited & (self.fallback < 0)).sum()),
        }


def label_probability(score: Any, primary: Any, fallback: Any, accepted: Any, *, ladder_floor: float,
                      agreement_rate: float = 0.0, deferred_disagreement_rate: float = 1.0) -> np.ndarray:
    """The labelling design: the probability a label is requested for inputs whose fallback answer
    was observed. The monitor draws ``rng.random() < p`` and records ``p`` as ``p_label``.

    * disagreements (``primary != fallback``) scored at or above ``ladder_floor`` (the loosest
      candidate threshold): 1.0 when the input was accepted (a shadow-audited input),
      ``deferred_disagreement_rate`` when it was deferred;
    * everything else (agreements, disagreements below every candidate): ``agreement_rate``.

    A relative target without ``reference`` needs ``agreement_rate > 0`` (the fallback's accuracy
    is estimated from those labels); the accuracy drop and the agreement target need none.

    Examples
    --------
    >>> label_probability([0.9, 0.9, 0.7, 0.2], [1, 1, 0, 0], [1, 0, 1, 1], [True, True, False, False],
    ...                   ladder_floor=0.5, agreement_rate=0.01, deferred_disagreement_rate=0.25).tolist()
    [0.01, 1.0, 0.25, 0.01]
    """
    for v, name in ((agreement_rate, "agreement_rate"),
                    (deferred_disagreement_rate, "deferred_disagreement_rate")):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {v}")
    s = np.asarray(score, dtype=np.float64)
    dis = np.asarray(primary) != np.asarray(fallback)
    acc = np.asarray(accepted, dtype=bool)
    in_range = dis & decision.accepts(s, None, ladder_floor)
    p = np.where(in_range, np.where(acc, 1.0, deferred_disagreement_rate), agreement_rate)
    return np.asarray(p, dtype=np.float64)


def stream_ladder(scores: Any, coverages: Any = None) -> np.ndarray:
    """Candidate thresholds, strict to loose (descending), at the given coverages of ``scores``
    (default 2%, 4%, ..., 98%). Fix the ladder ONCE (e.g. from the offline calibration scores)
    and pass the same ladder to every :func:`certify_stream` call of a stream.

    Examples
    --------
    >>> stream_ladder(np.linspace(0, 1, 101), [0.1, 0.5]).tolist()
    [0.9, 0.5]
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if s.size == 0:
        raise ValueError("stream_ladder needs scores")
    cov = np.arange(0.02, 0.99, 0.02) if coverages is None else np.asarray(coverages, dtype=np.float64)
    idx = np.clip(np.ceil(cov * s.size).astype(np.int64) - 1, 0, s.size - 1)
    return np.unique(s[idx])[::-1].copy()


