"""Simulated streams with known truth, for the validity suite and the benchmarks of issue 22.

A :class:`StreamPopulation` is a finite set of inputs (score, both stages' predictions, label);
a stream draws inputs from it with replacement, so the truth at every threshold is the
population's own figure, exactly. :func:`simulate_records` plays the monitor's sampling design
on a stream (shadow audits, the labelling design of :func:`~.records.label_probability`, labels
that come back at once), optionally with a drift at a known time; :func:`validity` certifies
many streams and counts how often the certificate was ever wrong; :func:`drift_delays` runs
the alarm.

"Ever wrong" is read from the final certificate of each stream: with labels back at once, the
certificate checked after any batch is the leading run of candidates whose capital had crossed
``1 / delta`` by then, which only grows; so a wrong certificate at any check is a wrong final
one (``tests/test_monitoring_validity.py`` checks this on prefixes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import decision
from .records import StreamRecords, label_probability
from .sequential import ThresholdEProcess, certify_stream

__all__ = ["StreamPopulation", "simulate_records", "validity", "drift_delays"]


@dataclass(frozen=True)
class StreamPopulation:
    """A finite population of routed inputs: the first stage's score and prediction, the
    fallback's prediction and the label (binary or multiclass indices)."""

    score: np.ndarray
    primary: np.ndarray
    fallback: np.ndarray
    label: np.ndarray
    name: str = "population"

    @classmethod
    def from_csv(cls, path: str | Path, name: str = "SST-2 dev") -> StreamPopulation:
        """Rows of ``benchmarks/results/sst2_dev_outputs.csv``: label, the first and the last
        stage's probability of class 1."""
        d = np.loadtxt(path, delimiter=",", skiprows=1)
        p1, q1 = d[:, 1], d[:, 2]
        return cls(np.maximum(p1, 1 - p1), (p1 >= 0.5).astype(np.int64), (q1 >= 0.5).astype(np.int64),
                   d[:, 0].astype(np.int64), name)

    @classmethod
    def synthetic(cls, n: int = 100_000, seed: int = 0, fallback_accuracy: float = 0.92) -> StreamPopulation:
        """A binary population whose first stage agrees with the fallback more the higher its
        score; a disagreement is a gain (the first stage right, the fallback wrong) with probability
        0.1 at the lowest scores up to 0.3 at the top, else a loss. The truth is computed on the population itself."""
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, n)
        fb = np.where(rng.random(n) < fallback_accuracy, y, 1 - y)
        s = 0.5 + 0.5 * rng.beta(4.0, 1.0, n)
        p_agree = 1.0 - 0.6 * (1.0 - s) ** 1.2 - 0.004
        agree = rng.random(n) < p_agree
        pr = np.where(agree, fb, 1 - fb)
        # Among the disagreements, make the first stage right (a gain) with prob 0.25 + 0.25 * s'.
        gain = (~agree) & (rng.random(n) < 0.1 + 0.4 * (s - 0.5))
        fb = np.where(gain, 1 - y, fb)
        pr = np.where(gain, y, np.where(~agree, 1 - fb, pr))
        return cls(s, pr.astype(np.int64), fb.astype(np.int64), y.astype(np.int64), f"synthetic (seed {seed})")

    def truth(self, ladder: Any, objective: str, target: float) -> np.ndarray:
        """Whether the target holds at each threshold of ``ladder`` in this population."""
        t = np.asarray(ladder, dtype=np.float64)
        A = decision.accepts_broadcast(self.score[None, :], t[:, None])
        c = (self.primary == self.label)
        f = (self.fallback == self.label)
        if objective == "relative_accuracy":
            return (A * (f.astype(float) - c)).mean(axis=1) <= (1 - target) * f.mean() + 1e-12
        if objective == "accuracy_drop":
            return (A * (f.astype(float) - c)).mean(axis=1) <= target + 1e-12
        if objective == "accuracy":
            return (A * c + ~A * f).mean(axis=1) >= target - 1e-12
        return (~A + A * (self.primary == self.fallback)).mean(axis=1) >= target - 1e-12

    def value(self, thresholds: Any, objective: str) -> np.ndarray:
        """The objective's value at each threshold (ratio for a relative target)."""
        t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        A = decision.accepts_broadcast(self.score[None, :], t[:, None])
        c = (self.primary == self.label)
        f = (self.fallback == self.label)
        sys_acc = (A * c + ~A * f).mean(axis=1)
        if objective == "relative_accuracy":
            return sys_acc / f.mean()
        if objective == "accuracy_drop":
            return sys_acc - f.mean()
        if objective == "accuracy":
            return sys_acc
        return (~A + A * (self.primary == self.fallback)).mean(axis=1)


def simulate_records(pop: StreamPopulation, n: int, rng: np.random.Generator, *, deployed_threshold: Any,
                     audit_rate: float, ladder_floor: float, agreement_rate: float = 0.0,
                     deferred_disagreement_rate: float = 1.0, drift_at: int | None = None,
                     drift_drop: float = 0.02, start: int = 0) -> StreamRecords:
    """A stream of ``n`` inputs drawn from ``pop`` with the monitor's sampling design; labels come
    back at once.

    ``deployed_threshold`` is a float or an array of shape ``(n,)`` (a threshold that moves with
    time, fixed before each input). From input ``drift_at`` on (counted from ``start``, the
    position of this chunk in the stream), the first stage's accuracy on the inputs it accepts
    drops by ``drift_drop``: a right answer there turns wrong with probability
    ``drift_drop / (its accuracy on accepted inputs)``.
    """
    i = rng.integers(0, pop.score.shape[0], n)
    s, pr, fb, y = pop.score[i], pop.primary[i].copy(), pop.fallback[i], pop.label[i]
    t = np.broadcast_to(np.asarray(deployed_threshold, dtype=np.float64), (n,))
    acc = decision.accepts_broadcast(s, t)
    if drift_at is not None:
        pos = start + np.arange(n)
        ok = acc & (pr == y)
        accepted = decision.accepts(pop.score, None, float(t[0]))
        base = float(np.mean(pop.primary[accepted] == pop.label[accepted]))
        flip = (pos >= drift_at) & ok & (rng.random(n) < drift_drop / max(base, 1e-9))
        pr = np.where(flip, (y + 1) % max(int(pop.label.max()) + 1, 2), pr)
    aud = ~acc | (rng.random(n) < audit_rate)
    p = label_probability(s, pr, fb, acc, ladder_floor=ladder_floor, agreement_rate=agreement_rate,
                          deferred_disagreement_rate=deferred_disagreement_rate)
    p = np.where(aud, p, 0.0)
    req = aud & (rng.random(n) < p)
    return StreamRecords(s, pr, np.where(aud, fb, -1), aud, np.where(acc, audit_rate, 1.0), np.where(req, y, -1),
                         req, p)


def validity(pop: StreamPopulation, *, streams: int, n: int, seed: int, ladder: Any, deployed_threshold: float,
             audit_rate: float, delta: float = 0.05, agreement_rate: float = 0.0,
             deferred_disagreement_rate: float = 1.0, reference: float | None = None,
             **target: float) -> dict[str, Any]:
    """Certify ``streams`` simulated streams of ``n`` inputs; the share whose certificate was ever
    wrong (certified a threshold at which the target fails in ``pop``), and what they certified.

    ``target``: exactly one keyword of :func:`~.sequential.certify_stream`.
    """
    (kw, tv), = target.items()
    objective = {"target_relative_accuracy": "relative_accuracy", "max_accuracy_drop": "accuracy_drop",
                 "target_accuracy": "accuracy", "target_agreement": "agreement"}[kw]
    lad = np.asarray(ladder, dtype=np.float64)
    holds = pop.truth(lad, objective, tv)
    first_false = int(np.argmin(holds)) if not holds.all() else lad.size
    rng = np.random.default_rng(seed)
    runs, cov, labels = [], [], []
    for _ in range(streams):
        rec = simulate_records(pop, n, rng, deployed_threshold=deployed_threshold, audit_rate=audit_rate,
                               ladder_floor=float(lad[-1]), agreement_rate=agreement_rate,
                               deferred_disagreement_rate=deferred_disagreement_rate)
        c = certify_stream(rec, delta=delta, ladder=lad, reference=reference, **{kw: tv})
        runs.append(c.ladder_index)
        cov.append(c.coverage)
        labels.append(c.evidence["labels_received"])
    r = np.asarray(runs)
    return {
        "population": pop.name, "objective": objective, "target": tv, "delta": delta, "streams": streams, "n": n,
        "first_false_rung": first_false, "ladder_size": int(lad.size),
        "ever_wrong": float(np.mean(r > first_false)), "mean_certified_rungs": float(r.mean()),
        "mean_coverage": float(np.mean(cov)), "mean_labels": float(np.mean(labels)),
        "oracle_coverage": (float(np.mean(decision.accepts(pop.score, None, float(lad[first_false - 1]))))
                            if first_false else 0.0),
    }


def drift_delays(pop: StreamPopulation, *, streams: int, n: int, drift_at: int, seed: int, threshold: float,
                 audit_rate: float, ladder_floor: float, delta: float = 0.05, drift_drop: float = 0.02,
                 deferred_disagreement_rate: float = 1.0, **target: float) -> dict[str, Any]:
    """Run the alarm of the deployed ``threshold`` on streams whose first stage drifts at
    ``drift_at``: the share of streams alarmed before the drift, and the delays after it."""
    (kw, tv), = target.items()
    objective = {"target_relative_accuracy": "relative_accuracy", "max_accuracy_drop": "accuracy_drop",
                 "target_accuracy": "accuracy", "target_agreement": "agreement"}[kw]
    rng = np.random.default_rng(seed)
    first = []
    for _ in range(streams):
        rec = simulate_records(pop, n, rng, deployed_threshold=threshold, audit_rate=audit_rate,
                               ladder_floor=ladder_floor, deferred_disagreement_rate=deferred_disagreement_rate,
                               drift_at=drift_at, drift_drop=drift_drop)
        e = ThresholdEProcess(threshold, objective, tv, delta=delta,
                              min_probability=min(audit_rate, deferred_disagreement_rate))
        first.append(e.path(rec)[2])
    f = np.asarray(first)
    pre = (f >= 0) & (f <= drift_at)
    post = f > drift_at
    delays = f[post] - drift_at
    return {
        "population": pop.name, "objective": objective, "target": tv, "threshold": threshold, "streams": streams,
        "n": n, "drift_at": drift_at, "drift_drop": drift_drop,
        "alarm_before_drift": float(np.mean(pre)), "detected_after_drift": float(np.mean(post)),
        "never": float(np.mean(f < 0)),
        "delay_median": float(np.median(delays)) if delays.size else float("nan"),
        "delay_p90": float(np.quantile(delays, 0.9)) if delays.size else float("nan"),
        "delay_mean": float(delays.mean()) if delays.size else float("nan"),
    }
