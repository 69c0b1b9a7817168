"""Validity suite for the stream certificates and the alarm (issue 22).

The smaller version of ``benchmarks/bench_stream_validity.py`` (1,000 streams of 100,000 inputs
there; results in docs/monitoring.md): fewer and shorter streams, the same procedure, the same
assertion as ``tests/test_validity.py``: the share of streams whose certificate was EVER wrong
(checked after every label batch) is at most delta plus a binomial margin (the 99.99% quantile of
Binomial(streams, delta) / streams). Streams are drawn with replacement from populations with
known truth: the SST-2 dev stage outputs (MiniLM int8, MPNet int8) and a synthetic population.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from confroute.monitoring import certify_stream, stream_ladder
from confroute.monitoring.simulate import StreamPopulation, drift_delays, simulate_records, validity

pytestmark = pytest.mark.slow

STREAMS = 200
N = 30_000
DELTA = 0.05
CSV = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "sst2_dev_outputs.csv"
SST = StreamPopulation.from_csv(CSV)
SYN = StreamPopulation.synthetic(n=50_000, seed=1)


def margin(delta: float, draws: int = STREAMS) -> float:
    return float(binom.ppf(0.9999, draws, delta)) / draws


SETTINGS = [
    ("sst2", {"target_relative_accuracy": 0.995, "agreement_rate": 0.005}),
    ("sst2", {"target_relative_accuracy": 0.995, "reference": float(np.mean(SST.fallback == SST.label))}),
    ("sst2", {"max_accuracy_drop": 0.004}),
    ("sst2", {"target_agreement": 0.995}),
    ("synthetic", {"target_relative_accuracy": 0.995, "agreement_rate": 0.005}),
    ("synthetic", {"target_agreement": 0.985}),
]


@pytest.mark.parametrize("pop_name,kw", SETTINGS, ids=[f"{p}-{sorted(k)[-1]}" for p, k in SETTINGS])
def test_stream_certificate_is_ever_wrong_at_most_delta(pop_name, kw):
    pop = SST if pop_name == "sst2" else SYN
    lad = stream_ladder(pop.score)
    r = validity(pop, streams=STREAMS, n=N, seed=11, ladder=lad, deployed_threshold=float(lad[24]),
                 audit_rate=0.25, deferred_disagreement_rate=0.25, delta=DELTA, **kw)
    assert r["first_false_rung"] < lad.size          # some candidate fails: the test can fail
    assert r["ever_wrong"] <= margin(DELTA), r
    assert r["mean_certified_rungs"] > 0, r           # and it certifies something


def test_every_check_is_covered_by_the_last():
    """The reading of "ever wrong" the suite relies on: the certified rung checked after each batch
    never exceeds the last check's (so a wrong certificate at any check is wrong at the end)."""
    lad = stream_ladder(SST.score)
    rng = np.random.default_rng(5)
    for _ in range(3):
        rec = simulate_records(SST, N, rng, deployed_threshold=float(lad[24]), audit_rate=0.25,
                               ladder_floor=float(lad[-1]), agreement_rate=0.005, deferred_disagreement_rate=0.25)
        runs = [certify_stream(rec.head(t), ladder=lad, target_relative_accuracy=0.995).ladder_index
                for t in range(1000, N + 1, 1000)]
        assert runs == sorted(runs)


@pytest.mark.parametrize("pop_name,kw", [("sst2", {"target_relative_accuracy": 0.995}),
                                         ("synthetic", {"max_accuracy_drop": 0.004})])
def test_alarm_false_alarms_and_detection(pop_name, kw):
    pop = SST if pop_name == "sst2" else SYN
    lad = stream_ladder(pop.score)
    d = drift_delays(pop, streams=100, n=60_000, drift_at=20_000, seed=3, threshold=float(lad[24]),
                     audit_rate=0.25, ladder_floor=float(lad[-1]), deferred_disagreement_rate=0.25, delta=DELTA,
                     drift_drop=0.02, **kw)
    assert d["alarm_before_drift"] <= margin(DELTA, 100), d
    assert d["detected_after_drift"] >= 0.5, d
