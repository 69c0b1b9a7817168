"""Anytime-valid certificates and alarms from a production stream (issue 22: the statistics).

A deployed two-stage router answers every input; the monitor calls the fallback on every
deferred input (that is the router's own answer) and, as a *shadow call*, on a random share of
the accepted ones, and asks for labels on a designed random subset. This module turns those
records into a threshold certificate that may be checked after every label batch, forever, and
into an alarm for the deployed threshold.

What is estimated
-----------------
For a candidate threshold ``t`` write ``A = [score >= t]`` (the first stage answers), ``c`` and
``f`` for "the first stage / the fallback is right". The system is right on ``A c + (1 - A) f``, so

* relative accuracy (``target_relative_accuracy = rho``, ``eps = 1 - rho``): the target
  ``E[sys] >= rho E[f]`` is ``E[A (f - c)] <= eps E[f]``. ``A (f - c)`` is non-zero only on inputs
  the first stage accepts *and* where the stages disagree: that is where the only labels the
  loss needs are;
* accuracy drop (``max_accuracy_drop = eps``): ``E[A (f - c)] <= eps``;
* accuracy (``target_accuracy = a``): ``E[A c + (1 - A) f] >= a``, labels on every kind of input
  (the centred Horvitz-Thompson term ``W (a - right)`` on labelled inputs, 0 elsewhere);
* agreement with the fallback (``target_agreement = a``): ``E[A [primary != fallback]] <= 1 - a``,
  no labels at all (deferred inputs agree by construction; the disagreements of accepted inputs
  are seen on the audited ones, weighted by ``1 / p_fallback``: the rare event carries the weight,
  which keeps the variance small).

Inverse-probability weighting
-----------------------------
An input's fallback answer is observed with probability ``p_fallback`` (1 when deferred, the audit
rate when accepted), and, once observed, its label is requested with probability ``p_label``
(:func:`label_probability`). Both are fixed before the input is seen (they may depend on the
past: a new deployed threshold or audit rate changes them for later inputs). With ``O`` and ``R``
the indicators and ``W = O R / (p_fallback p_label)``, every per-input quantity ``q`` above is
estimated without bias by ``W q`` (Horvitz & Thompson 1952), given the past. Deferred inputs have
``p_fallback = 1``: their disagreements come for free and are used at every candidate threshold
that would have accepted them. Agreements need no label for the loss (``f = c`` there).

The fallback's accuracy ``E[f]`` of a relative target cannot be learned from labels on
disagreements alone (they see only the inputs where the two differ). Two ways are offered:

* ``reference``: a lower confidence bound on the fallback's accuracy from other labelled data (an
  offline certificate); it enters as the constant ``eps x reference`` and its own error
  probability adds to ``delta``;
* otherwise, a random sample of *agreements* is labelled at ``agreement_rate`` (and the
  disagreements below every candidate threshold at the same rate): ``W f`` is then an unbiased
  estimate of ``f`` on every input, and the per-input statistic is
  ``y = W (A (f - c) - eps f)``, whose mean is ``<= 0`` exactly when the target holds.

Anytime validity
----------------
For each candidate ``t_h`` of a fixed ladder (strict to loose) the null "the target fails at
``t_h``" is ``E[y] > 0`` for every input given the past. Its test is a *test by betting*
(Waudby-Smith & Ramdas 2024; Shafer 2021): the capital ``K_T = prod_{i <= T} (1 - lambda y_i)`` is a
nonnegative supermartingale under the null for any ``0 <= lambda < 1 / u`` fixed in advance, where
``u`` bounds ``y`` from above (``u = 1 / min(p_fallback p_label)`` on a disagreement: the IPW terms
are bounded because the sampling probabilities are bounded below). The bets are a uniform
mixture over a fixed grid ``lambda_k = c_k / u`` (``c_k = 0.5, 0.25, ...``): an average of
supermartingales is one, and the mixture adapts to the unknown margin at the cost of
``log(K)``. By Ville's inequality ``P(sup_T K_T >= 1 / delta) <= delta``, so the candidate is
certified once the mixture capital has *ever* reached ``1 / delta``; checking after every batch,
or every input, is covered.

The candidates are combined by fixed-sequence testing (Westfall & Krishen 2001) along the ladder:
the certified threshold is the loosest of the leading run of certified candidates. Each test is
run at the full ``delta``; the family-wise error over *all times* is still ``<= delta``, because
a wrong certificate at any time needs the first false candidate of the ladder (the first ``h`` at
which the target fails) to have been certified at some time, an event of probability
``<= delta`` by Ville. The ladder must be fixed before the stream (or from data the tests do
not read: by default the scores of the first ``LADDER_WARMUP`` inputs, which the tests skip).

Pending labels and failed shadow calls
--------------------------------------
The mixture bets do not depend on the data, so the log capital is a sum of per-input terms, each
increasing in ``-y_i``. A requested label that has not come back is counted as its *worst case*
(the largest ``y`` its label could give: a loss on an accepted disagreement), a failed shadow
call as the largest ``y`` an audited input can give (``u`` when accepted). Each capital computed
so is at most the capital of the true values, at every prefix; so every certificate given with
pending labels is implied by the one of the true values (valid whatever the labels' delays, even
when hard inputs are labelled later), and a label that arrives can only raise the capital: the
certified threshold never moves back under a stationary stream. The alarm (below) counts them as
their best case, for the same reason.

The alarm
---------
:class:`ThresholdEProcess` tests "the deployed threshold still meets the target" with the mirror
image: capital ``prod (1 + lambda y_i)`` over the same mixture, with ``y`` built so that its mean
is ``<= 0`` when the target holds (for a relative target, ``y = W A (f - c) - eps F_up`` with a
known upper bound ``F_up`` on the fallback's accuracy, default 1: the target implies
``E[A (f - c)] <= eps F <= eps F_up``). The e-process is the average, with weights
``1 / ((j + 1)(j + 2))``, of such capitals started at inputs ``0, R, 2R, ...``, so a change late
in a long good stream is not hidden by the capital lost before it (compare the e-detectors of
Shin, Ramdas & Rinaldo 2024; the weights keep one test supermartingale, so Ville still bounds the
false alarms over the whole stream). Alarm when it reaches ``1 / delta``: before any change, a
false alarm happens with probability ``<= delta`` over the whole stream. :func:`policy_action`
says what each policy does then.

What the guarantee assumes
--------------------------
Inputs (with their labels) are independent draws from one distribution, in arrival order, and
the sampling probabilities are set before each input is seen. Under drift the certificate is a
statement about the average over the stream so far, not about today: the alarm is what watches
the deployed threshold, and after an alarm the monitor starts a new certificate from the records
after it.

References
----------
Horvitz & Thompson (1952). A generalization of sampling without replacement from a finite
universe. JASA 47(260).
Ville (1939). Étude critique de la notion de collectif. Gauthier-Villars.
Westfall & Krishen (2001). Optimally weighted, fixed sequence and gatekeeper multiple testing
procedures. J. Statist. Plann. Inference 99(1).
Shafer (2021). Testing by betting: a strategy for statistical and scientific communication.
JRSS-A 184(2).
Waudby-Smith & Ramdas (2024). Estimating means of bounded random variables by betting. JRSS-B 86(1).
Shin, Ramdas & Rinaldo (2024). E-detectors: a nonparametric framework for sequential change
detection. New England Journal of Statistics in Data Science 2(2).
Ramdas, Grünwald, Vovk & Shafer (2023). Game-theoretic statistics and safe anytime-valid
inference. Statistical Science 38(4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import decision
from ..core._json import json_float
from ..core.choice import Choice
from ..selection.bounds import LEVEL
from .records import LADDER_WARMUP, StreamRecords, label_probability, stream_ladder
from .stream_stats import (
    OBJECTIVES,
    RESTART_EVERY,
    agreement_best,
    min_probability_of,
    mixture_log_capital,
    objective_of,
    restart_mixture,
    stream_columns,
)

__all__ = [
    "StreamRecords",
    "StreamCertificate",
    "ThresholdEProcess",
    "PolicyAction",
    "certify_stream",
    "label_probability",
    "policy_action",
    "stream_ladder",
    "POLICIES",
]


@dataclass(frozen=True)
class StreamCertificate(Choice):
    """The loosest ladder threshold certified for the target from a stream; a :class:`Choice`.

    Attributes
    ----------
    thresholds : list of one float (``inf``: nothing certified, everything to the fallback)
    threshold : float
    feasible : bool
    guaranteed / lower_bound : float
        What is certified about the objective at ``threshold``: the target itself (ratio to the
        fallback's accuracy, accuracy drop as a negative number, system accuracy, or agreement);
        ``nan`` when nothing is certified. (Fixed-sequence testing certifies "the target holds at
        each certified candidate"; a sharper bound at the selected candidate would not be
        covered.)
    coverage : float
        Share of the tested inputs with a score at or above ``threshold``.
    estimate : float
        The inverse-probability-weighted point estimate of the objective at ``threshold``.
    objective : {"relative_accuracy", "accuracy_drop", "accuracy", "agreement"}
    target : float
        As given (``rho`` for a relative target, ``eps`` for a drop).
    delta : float
    procedure, assumption : str
    ladder_index : int
        Candidates certified (``0``: none).
    evidence : dict
        See :meth:`StreamRecords.evidence`.
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
        """The certified bound (see ``guaranteed``)."""
        return self.guaranteed

    @property
    def wording(self) -> str:
        """The objective in words."""
        return OBJECTIVES[self.objective][1]

    @property
    def sense(self) -> str:
        """Every stream objective is a floor."""
        return ">="

    @property
    def figure_format(self) -> str:
        """Shares."""
        return "pct"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become ``None``)."""
        return {
            "thresholds": [json_float(t) for t in self.thresholds], "feasible": bool(self.feasible),
            "guaranteed": json_float(self.guaranteed), "procedure": self.procedure,
            "assumption": self.assumption, "objective": self.objective, "target": float(self.target),
            "delta": float(self.delta), "threshold": json_float(self.threshold),
            "coverage": float(self.coverage), "estimate": json_float(self.estimate),
            "ladder_index": int(self.ladder_index), "evidence": {k: int(v) for k, v in self.evidence.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamCertificate:
        """The inverse of :meth:`to_dict`."""
        def f(v: Any, missing: float) -> float:
            return missing if v is None else float(v)
        return cls(
            thresholds=[f(t, np.inf) for t in data["thresholds"]], feasible=bool(data["feasible"]),
            guaranteed=f(data["guaranteed"], np.nan), procedure=str(data["procedure"]),
            assumption=str(data["assumption"]), objective=str(data["objective"]),
            target=float(data["target"]), delta=float(data["delta"]), threshold=f(data["threshold"], np.inf),
            coverage=float(data["coverage"]),
            estimate=f(data["estimate"], np.nan), ladder_index=int(data["ladder_index"]),
            evidence={k: int(v) for k, v in dict(data.get("evidence", {})).items()},
        )


ASSUMPTION = ("stream inputs (with their labels) are independent draws from one distribution, in arrival "
              "order; sampling probabilities fixed before each input is seen; the ladder fixed in advance")


def _checked_ladder(records: StreamRecords, ladder: Any) -> tuple[np.ndarray, int]:
    if ladder is None:
        if len(records) < LADDER_WARMUP:
            return np.zeros(0), len(records)
        return stream_ladder(records.score[:LADDER_WARMUP]), LADDER_WARMUP
    lad = np.asarray(ladder, dtype=np.float64).reshape(-1)
    if lad.size == 0 or not np.all(np.isfinite(lad)):
        raise ValueError("ladder must hold finite thresholds")
    if np.any(np.diff(lad) >= 0):
        raise ValueError("ladder must be strictly decreasing (strict to loose)")
    return lad, 0


def certify_stream(records: StreamRecords, *, target_relative_accuracy: float | None = None,
                   max_accuracy_drop: float | None = None, target_accuracy: float | None = None,
                   target_agreement: float | None = None, delta: float = 0.05,
                   ladder: Sequence[float] | np.ndarray | None = None, reference: float | None = None,
                   min_probability: float | None = None) -> StreamCertificate:
    """The loosest ladder threshold certified for exactly one target, valid at every check.

    Pure function of ``records`` (pass ALL records of the stream since the certificate's start,
    arrival order): checking after every label batch is covered by the guarantee, and under a
    stationary stream the certified threshold never moves back (see the module notes).

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

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> n = 20000
    >>> s = rng.random(n); y = rng.integers(0, 2, n)
    >>> fb = np.where(rng.random(n) < 0.9, y, 1 - y)                  # the fallback: 90% right
    >>> pr = np.where(rng.random(n) < 0.5 + 0.5 * s, fb, 1 - fb)      # agrees more when confident
    >>> acc = s >= 0.8
    >>> aud = ~acc | (rng.random(n) < 0.25)
    >>> p = label_probability(s, pr, fb, acc, ladder_floor=0.5, agreement_rate=0.05)
    >>> req = aud & (rng.random(n) < p)
    >>> rec = StreamRecords.from_columns(score=s, primary=pr, fallback=np.where(aud, fb, -1), audited=aud,
    ...     p_fallback=np.where(acc, 0.25, 1.0), label=np.where(req, y, -1), label_requested=req, p_label=p)
    >>> c = certify_stream(rec, max_accuracy_drop=0.02, ladder=np.linspace(0.99, 0.5, 50))
    >>> c.feasible, 0.05 < c.coverage < 0.5
    (True, True)
    """
    objective, target = objective_of(target_relative_accuracy, max_accuracy_drop, target_accuracy,
                                     target_agreement)
    LEVEL.check(delta, "delta")
    if reference is not None:
        if objective != "relative_accuracy":
            raise ValueError("reference= (the fallback's accuracy) is for target_relative_accuracy only")
        if not 0.0 < reference <= 1.0:
            raise ValueError(f"reference must be in (0, 1], got {reference}")
    lad, start = _checked_ladder(records, ladder)
    rec = records.tail(start) if start else records
    evidence = records.evidence()
    if lad.size == 0 or len(rec) == 0:
        return _certificate(objective, target, delta, rec, lad, 0, evidence, reference)
    if objective == "relative_accuracy" and reference is None:
        obs_agree = rec.audited & (rec.fallback >= 0) & (rec.fallback == rec.primary)
        if obs_agree.any() and not (rec.p_label[obs_agree] > 0).any():
            raise ValueError("a relative target needs the fallback's accuracy: give reference= (a lower bound "
                             "from an offline certificate) or label a random sample of agreements "
                             "(label_probability(..., agreement_rate > 0))")
    minp = (min_probability_of(rec, float(lad[-1]), objective) if min_probability is None
            else float(min_probability))
    if not 0.0 < minp <= 1.0:
        raise ValueError(f"min_probability must be in (0, 1], got {minp}")
    if objective == "agreement":
        if float(rec.p_fallback.min()) < minp * (1 - 1e-9):
            raise ValueError("a record's p_fallback is below min_probability: pass the design's smallest "
                             "audit rate")
        best = agreement_best(rec, lad, target, minp)
        rejected = best >= np.log(1.0 / delta)
        run = int(np.argmin(rejected)) if not rejected.all() else int(rejected.size)
        return _certificate(objective, target, delta, rec, lad, run, evidence, reference)
    y, counts, _, u = stream_columns(rec, lad, objective, target, reference, minp, "certify")
    if y.size and float(np.max(y)) > u * (1 + 1e-9):
        raise ValueError(f"a record's inverse-probability weight exceeds 1 / min_probability = {u:g}: pass the "
                         "design's smallest sampling probability as min_probability")
    _, best, _ = mixture_log_capital(y, u, -1.0, counts)
    rejected = best >= np.log(1.0 / delta)
    run = int(np.argmin(rejected)) if not rejected.all() else int(rejected.size)
    return _certificate(objective, target, delta, rec, lad, run, evidence, reference)


def _certificate(objective: str, target: float, delta: float, rec: StreamRecords, lad: np.ndarray, run: int,
                 evidence: dict[str, int], reference: float | None) -> StreamCertificate:
    thr = float(lad[run - 1]) if run else float("inf")
    feasible = run > 0
    bound = {"relative_accuracy": target, "accuracy_drop": -target}.get(objective, target)
    n = len(rec)
    return StreamCertificate(
        thresholds=[thr], feasible=feasible, guaranteed=float(bound) if feasible else float("nan"),
        procedure="stream betting mixture, fixed sequence"
        + (" (reference accuracy given)" if reference else ""),
        assumption=ASSUMPTION, objective=objective, target=target, delta=float(delta), threshold=thr,
        coverage=float(np.mean(decision.accepts(rec.score, None, thr))) if n else 0.0, estimate=_estimate(rec, thr, objective),
        ladder_index=run, evidence=evidence,
    )


def _estimate(r: StreamRecords, thr: float, objective: str) -> float:
    """Inverse-probability-weighted point estimate of the objective at ``thr`` (``nan``: unknown)."""
    n = len(r)
    if n == 0:
        return float("nan")
    got = r.label >= 0
    w = np.where(got, 1.0 / (r.p_fallback * np.where(r.p_label > 0, r.p_label, 1.0)), 0.0)
    A = decision.accepts(r.score, None, thr)
    c = got & (r.label == r.primary)
    f = got & (r.label == r.fallback)
    if objective == "agreement":
        obs = r.audited & (r.fallback >= 0)
        return float(1.0 - np.mean(A * (obs & (r.fallback != r.primary)) / r.p_fallback))
    if objective == "accuracy":
        return float(np.sum(w * (A * c + ~A * f)) / n)
    d = float(np.sum(w * A * (f.astype(float) - c)) / n)
    if objective == "accuracy_drop":
        return -d
    fa = float(np.sum(w * f) / n)
    return 1.0 - d / fa if fa > 0 else float("nan")


@dataclass
class ThresholdEProcess:
    """Sequential test of "the deployed threshold still meets the target" (an e-process).

    ``update(records)`` takes ALL records since the process started (arrival order; earlier rows
    may have gained labels since the last call) and returns the current e-value, the mixture
    capital ``mean_k prod_i (1 + c_k y_i / u)`` of the module notes (pending labels and failed
    calls at their most favourable value for the target, so a late label can only raise it). The
    alarm is raised, and stays raised, once the e-value has reached ``1 / delta`` at any input:
    under the null (the target holds, stationary stream) that happens with probability at most
    ``delta`` over the whole stream (Ville's inequality). ``to_dict``/``from_dict`` round-trip the
    state, so a restarted monitor that replays its ledger gives the same answer.

    Parameters
    ----------
    threshold : float
        The deployed threshold.
    objective : {"relative_accuracy", "accuracy_drop", "accuracy", "agreement"}
    target : float
        ``rho`` (relative), ``eps`` (drop), the accuracy or the agreement.
    delta : float
    min_probability : float, optional
        The design's smallest sampling probability (as for :func:`certify_stream`); default:
        read from the records.
    fallback_accuracy_upper : float, default 1.0
        Relative target: an upper bound on the fallback's accuracy. The test is of
        ``loss <= (1 - rho) x fallback_accuracy_upper``, which the target implies: a smaller,
        still valid bound makes the alarm more sensitive.
    restart_every : int, default 5000
        The e-process is an average of betting capitals started at inputs ``0, R, 2R, ...``
        (``R = restart_every``), the one started at the ``j``-th restart with weight
        ``1 / ((j + 1)(j + 2))`` (the weights sum to 1, so the average is a test supermartingale
        from 1 and Ville's bound holds). A capital started before a change has shrunk while the
        target held; a fresh one has not, so a change late in the stream is detected about as
        fast as an early one, at a cost of ``log((j + 1)(j + 2))`` in evidence.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> n = 40000
    >>> s = rng.random(n); y = rng.integers(0, 2, n)
    >>> fb = np.where(rng.random(n) < 0.9, y, 1 - y)
    >>> bad = np.arange(n) >= 20000                                     # the cheap stage breaks
    >>> pr = np.where(rng.random(n) < np.where(bad, 0.8, 0.995), fb, 1 - fb)
    >>> acc = s >= 0.5
    >>> aud = ~acc | (rng.random(n) < 0.25)
    >>> p = label_probability(s, pr, fb, acc, ladder_floor=0.5)
    >>> req = aud & (rng.random(n) < p)
    >>> rec = StreamRecords.from_columns(score=s, primary=pr, fallback=np.where(aud, fb, -1), audited=aud,
    ...     p_fallback=np.where(acc, 0.25, 1.0), label=np.where(req, y, -1), label_requested=req, p_label=p)
    >>> e = ThresholdEProcess(0.5, "accuracy_drop", 0.02)
    >>> _ = e.update(rec.head(20000)); e.alarm
    False
    >>> _ = e.update(rec); e.alarm, e.alarm_at
    (True, 40000)
    >>> ThresholdEProcess.from_dict(e.to_dict()) == e
    True
    """

    threshold: float
    objective: str
    target: float
    delta: float = 0.05
    min_probability: float | None = None
    fallback_accuracy_upper: float = 1.0
    restart_every: int = RESTART_EVERY
    n_seen: int = 0
    e_value: float = 1.0
    max_e_value: float = 1.0
    alarm_at: int | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {self.objective!r}")
        LEVEL.check(self.delta, "delta")
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"target must be in (0, 1), got {self.target}")
        if not 0.0 < self.fallback_accuracy_upper <= 1.0:
            raise ValueError("fallback_accuracy_upper must be in (0, 1]")

    @property
    def alarm(self) -> bool:
        """Whether the e-value has ever reached ``1 / delta``."""
        return self.alarm_at is not None

    def path(self, records: StreamRecords) -> tuple[float, float, int]:
        """Final log e-value, its running maximum, and the first row count at which it reached
        ``1 / delta`` (``-1``: never), for ``records`` from the start."""
        if len(records) == 0:
            return 0.0, 0.0, -1
        minp = self.min_probability
        if minp is None:
            minp = min_probability_of(records, self.threshold, self.objective)
        ref = self.fallback_accuracy_upper if self.objective == "relative_accuracy" else None
        y, counts, ends, u = stream_columns(records, [self.threshold], self.objective, self.target, ref, minp,
                                            "alarm")
        level = float(np.log(1.0 / self.delta))
        final, best, first = restart_mixture(y[0], u, counts, ends, self.restart_every, level)
        return final, best, (int(ends[first]) if first >= 0 else -1)

    def update(self, records: StreamRecords) -> float:
        """The e-value after ``records`` (all rows since the start); raises the alarm if due."""
        if len(records) < self.n_seen:
            raise ValueError(f"update() takes every record since the start: got {len(records)} rows after "
                             f"{self.n_seen}")
        final, best, _ = self.path(records)
        self.n_seen = len(records)
        self.e_value = float(np.exp(final))
        self.max_e_value = max(self.max_e_value, float(np.exp(best)))
        if self.alarm_at is None and best >= np.log(1.0 / self.delta):
            self.alarm_at = self.n_seen
        return self.e_value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"threshold": json_float(self.threshold), "objective": self.objective,
                "target": float(self.target),
                "delta": float(self.delta), "min_probability": self.min_probability,
                "fallback_accuracy_upper": float(self.fallback_accuracy_upper),
                "restart_every": int(self.restart_every), "n_seen": int(self.n_seen),
                "e_value": json_float(self.e_value), "max_e_value": json_float(self.max_e_value),
                "alarm_at": self.alarm_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdEProcess:
        """The inverse of :meth:`to_dict`."""
        d = dict(data)
        d["threshold"] = float("inf") if d["threshold"] is None else float(d["threshold"])
        for k in ("e_value", "max_e_value"):
            d[k] = float("inf") if d[k] is None else float(d[k])
        return cls(**d)


POLICIES = ("alert", "tighten", "fallback_all")


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
    applied).

    After an alarm, ``tighten`` moves to the certified threshold when it is stricter than the
    deployed one, else to ``conservative_threshold`` (default ``inf``: everything to the
    fallback); the certificate it reads should be one started after the alarm (records from
    ``alarm_at`` on), since the stream's past no longer describes it.

    Examples
    --------
    >>> policy_action("tighten", alarm=True, deployed_threshold=0.9).action
    'tighten'
    >>> policy_action("alert", alarm=False, deployed_threshold=0.9).action
    'none'
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    cert_t = certificate.threshold if certificate is not None and certificate.feasible else None
    if alarm:
        if policy == "alert":
            return PolicyAction("alert", None,
                                "the deployed threshold no longer meets the target (e-value >= 1/delta)")
        if policy == "fallback_all":
            return PolicyAction("fallback_all", float("inf"), "alarm: every input goes to the fallback")
        if cert_t is not None and cert_t > deployed_threshold:
            return PolicyAction("tighten", float(cert_t),
                                f"alarm: tightened to the certified threshold {cert_t:.6g}")
        return PolicyAction("tighten", float(conservative_threshold),
                            f"alarm: tightened to the conservative threshold {conservative_threshold:.6g}")
    if cert_t is not None and cert_t < deployed_threshold:
        if loosen:
            return PolicyAction("loosen", float(cert_t), f"a looser threshold {cert_t:.6g} is certified")
        return PolicyAction("recommend", float(cert_t),
                            f"a looser threshold {cert_t:.6g} is certified (not applied)")
    return PolicyAction("none", None, "no alarm; no looser threshold certified")
