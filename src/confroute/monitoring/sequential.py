"""Anytime-valid certificates and alarms from a production stream (issue 22: the statistics).

CONTRACT VERSION (first commit): the types and signatures are final; the bodies follow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.choice import Choice

__all__ = [
    "StreamRecords",
    "StreamCertificate",
    "ThresholdEProcess",
    "PolicyAction",
    "certify_stream",
    "label_probability",
    "policy_action",
    "stream_ladder",
]

#: Rows at the head of a stream whose scores make the default ladder (and are not tested).
LADDER_WARMUP = 1000


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
    """

    score: np.ndarray
    primary: np.ndarray
    fallback: np.ndarray
    audited: np.ndarray
    p_fallback: np.ndarray
    label: np.ndarray
    label_requested: np.ndarray
    p_label: np.ndarray

    def __len__(self) -> int:
        return int(np.asarray(self.score).shape[0])


def label_probability(score: Any, primary: Any, fallback: Any, accepted: Any, *, ladder_floor: float,
                      agreement_rate: float = 0.0, deferred_disagreement_rate: float = 1.0) -> np.ndarray:
    """The labelling design: the probability a label is requested for inputs whose fallback answer
    was observed. The monitor draws ``rng.random() < p`` and records ``p`` as ``p_label``.

    * disagreements (``primary != fallback``) scored at or above ``ladder_floor`` (the loosest
      candidate threshold): 1.0 when the input was accepted (a shadow-audited input),
      ``deferred_disagreement_rate`` when it was deferred;
    * everything else (agreements, disagreements below every candidate): ``agreement_rate``.
    """
    raise NotImplementedError


def stream_ladder(scores: Any, coverages: Any = None) -> np.ndarray:
    """Candidate thresholds, strict to loose (descending), at the given coverages of ``scores``
    (default 2%, 4%, ..., 98%). Fix the ladder ONCE (e.g. from the offline calibration scores)
    and pass the same ladder to every :func:`certify_stream` call of a stream."""
    raise NotImplementedError


@dataclass(frozen=True)
class StreamCertificate(Choice):
    """The loosest ladder threshold certified for the target from a stream; a :class:`Choice`.

    Attributes
    ----------
    thresholds : list of one float (``inf``: nothing certified, everything to the fallback)
    threshold : float
    feasible : bool
    guaranteed / lower_bound : float
        The certified bound on the objective (ratio to the fallback's accuracy, accuracy drop
        as a negative number, system accuracy, or agreement) at ``threshold``; ``nan`` when not
        feasible.
    coverage : float
        Share of the stream's inputs with a score at or above ``threshold``.
    estimate : float
        The inverse-probability-weighted point estimate of the objective at ``threshold``.
    objective : {"relative_accuracy", "accuracy_drop", "accuracy", "agreement"}
    target : float
    delta : float
    procedure, assumption : str
    ladder_index : int
        Candidates certified (``0``: none).
    evidence : dict
        ``n_seen``, ``n_audited``, ``n_disagreements``, ``labels_requested``,
        ``labels_received``, ``labels_pending``, ``shadow_failures``.
    """

    thresholds: list[Any]
    feasible: bool
    guaranteed: float
    procedure: str
    assumption: str
    objective: str
    target: float
    delta: float
    threshold: float
    coverage: float
    estimate: float
    ladder_index: int
    evidence: dict[str, int] = field(default_factory=dict)

    @property
    def lower_bound(self) -> float:
        return self.guaranteed

    @property
    def wording(self) -> str:
        raise NotImplementedError

    @property
    def sense(self) -> str:
        return ">="

    @property
    def figure_format(self) -> str:
        return "pct"

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamCertificate:
        raise NotImplementedError


def certify_stream(records: StreamRecords, *, target_relative_accuracy: float | None = None,
                   max_accuracy_drop: float | None = None, target_accuracy: float | None = None,
                   target_agreement: float | None = None, delta: float = 0.05,
                   ladder: Sequence[float] | np.ndarray | None = None, reference: float | None = None,
                   min_probability: float | None = None) -> StreamCertificate:
    """The loosest ladder threshold certified for exactly one target, valid at every check.

    Pure function of ``records`` (pass ALL records of the stream since the certificate's start,
    arrival order): checking after every label batch is covered by the guarantee.

    Parameters
    ----------
    records : StreamRecords
    target_relative_accuracy, max_accuracy_drop, target_accuracy, target_agreement : float
        Exactly one. ``target_agreement`` needs no labels.
    delta : float
    ladder : descending thresholds, optional
        Fixed for the stream's life. Default: :func:`stream_ladder` of the first
        ``LADDER_WARMUP`` scores, which rows are then left out of the tests.
    reference : float, optional
        Relative targets: a lower confidence bound on the fallback's accuracy from other data
        (an offline certificate); then no agreement labels are needed. Its own error
        probability adds to ``delta``. Without it, the fallback's accuracy is estimated from the
        labelled random sample of agreements (``agreement_rate`` of :func:`label_probability`).
    min_probability : float, optional
        The smallest ``p_fallback * p_label`` the design can give a disagreement (the audit
        rate, or ``deferred_disagreement_rate`` if smaller); default: read from the records.
    """
    raise NotImplementedError


@dataclass
class ThresholdEProcess:
    """Sequential test of "the deployed threshold still meets the target" (an e-process).

    ``update(records)`` takes ALL records since the process started (arrival order; earlier rows
    may have gained labels) and returns the e-value; the alarm is raised (and stays raised) once
    the e-value reaches ``1 / delta``: under the null (target met, stationary stream) that happens
    with probability at most ``delta`` ever. ``to_dict``/``from_dict`` round-trip the state.
    """

    threshold: float
    objective: str
    target: float
    delta: float = 0.05
    min_probability: float | None = None
    fallback_accuracy_upper: float = 1.0
    n_seen: int = 0
    e_value: float = 1.0
    max_e_value: float = 1.0
    alarm_at: int | None = None

    @property
    def alarm(self) -> bool:
        return self.alarm_at is not None

    def update(self, records: StreamRecords) -> float:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdEProcess:
        raise NotImplementedError


@dataclass(frozen=True)
class PolicyAction:
    """What a policy does now: ``action`` in {"none", "alert", "tighten", "fallback_all",
    "recommend", "loosen"}, the new threshold (``None``: unchanged) and why."""

    action: str
    threshold: float | None
    reason: str


def policy_action(policy: str, *, alarm: bool, deployed_threshold: float,
                  certificate: StreamCertificate | None = None, loosen: bool = False,
                  conservative_threshold: float = float("inf")) -> PolicyAction:
    """What ``policy`` ("alert", "tighten", "fallback_all") does given the alarm and the current
    certificate; with no alarm, a looser certified threshold is recommended (``loosen=True``:
    applied)."""
    raise NotImplementedError
