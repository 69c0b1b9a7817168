"""Stream certificates, the agreement certificate, the alarm and the policies (issue 22, statistics)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from confroute.core.choice import Choice, stage_thresholds
from confroute.monitoring import (
    StreamCertificate,
    StreamRecords,
    ThresholdEProcess,
    certify_stream,
    label_probability,
    policy_action,
    stream_ladder,
)
from confroute.monitoring.simulate import StreamPopulation, simulate_records

POP = StreamPopulation.synthetic(n=20_000, seed=3)
LADDER = stream_ladder(POP.score, np.arange(0.05, 0.96, 0.05))


def stream(n: int = 30_000, seed: int = 0, **kw) -> StreamRecords:
    args = dict(deployed_threshold=float(LADDER[8]), audit_rate=0.25, ladder_floor=float(LADDER[-1]),
                agreement_rate=0.02, deferred_disagreement_rate=0.5)
    args.update(kw)
    return simulate_records(POP, n, np.random.default_rng(seed), **args)


def with_rows(r: StreamRecords, **changes) -> StreamRecords:
    return StreamRecords(**{**{k: getattr(r, k) for k in r.__dataclass_fields__}, **changes})


def test_records_are_checked():
    ok = dict(score=[0.9], primary=[1], fallback=[1], audited=[True], p_fallback=[0.25], label=[-1],
              label_requested=[False], p_label=[0.0])
    StreamRecords.from_columns(**ok)
    with pytest.raises(ValueError, match="rows"):
        StreamRecords.from_columns(**{**ok, "score": [0.9, 0.8]})
    with pytest.raises(ValueError, match="never requested"):
        StreamRecords.from_columns(**{**ok, "label": [1]})
    with pytest.raises(ValueError, match="p_fallback"):
        StreamRecords.from_columns(**{**ok, "p_fallback": [0.0]})
    with pytest.raises(ValueError, match="fallback's answer is known"):
        StreamRecords.from_columns(**{**ok, "fallback": [-1], "label_requested": [True], "p_label": [1.0]})


def test_label_design():
    p = label_probability([0.9, 0.9, 0.7, 0.2, 0.7], [1, 1, 0, 0, 1], [1, 0, 1, 1, 1],
                          [True, True, False, False, False], ladder_floor=0.5, agreement_rate=0.01,
                          deferred_disagreement_rate=0.25)
    assert p.tolist() == [0.01, 1.0, 0.25, 0.01, 0.01]


def test_exactly_one_target_and_reference_only_for_relative():
    r = stream(5000)
    with pytest.raises(ValueError, match="exactly one"):
        certify_stream(r, ladder=LADDER)
    with pytest.raises(ValueError, match="exactly one"):
        certify_stream(r, ladder=LADDER, max_accuracy_drop=0.01, target_agreement=0.9)
    with pytest.raises(ValueError, match="relative"):
        certify_stream(r, ladder=LADDER, max_accuracy_drop=0.01, reference=0.9)
    with pytest.raises(ValueError, match="decreasing"):
        certify_stream(r, ladder=LADDER[::-1], max_accuracy_drop=0.01)


def test_relative_target_needs_the_fallback_accuracy():
    r = stream(5000, agreement_rate=0.0)
    with pytest.raises(ValueError, match="reference"):
        certify_stream(r, ladder=LADDER, target_relative_accuracy=0.99)
    c = certify_stream(r, ladder=LADDER, target_relative_accuracy=0.99, reference=0.9)
    assert c.objective == "relative_accuracy"


def test_certificate_is_a_choice_and_round_trips():
    c = certify_stream(stream(), ladder=LADDER, max_accuracy_drop=0.01)
    assert isinstance(c, Choice) and c.feasible
    assert stage_thresholds(c) == [c.threshold]
    d = json.loads(json.dumps(c.to_dict()))
    assert StreamCertificate.from_dict(d) == c
    assert c.guaranteed == -0.01 and c.sense == ">=" and c.wording == "accuracy drop from the fallback"
    none = certify_stream(stream(200), ladder=LADDER, max_accuracy_drop=0.001)
    assert not none.feasible and none.threshold == np.inf and none.coverage == 0.0
    assert StreamCertificate.from_dict(json.loads(json.dumps(none.to_dict()))).threshold == np.inf


def test_certified_threshold_only_grows_along_the_stream():
    """Checked after every batch, the certificate never moves back (stationary stream), and the
    last check holds every earlier one: "ever wrong" is "wrong at the end"."""
    r = stream(40_000, seed=1)
    runs = [certify_stream(r.head(t), ladder=LADDER, target_relative_accuracy=0.99).ladder_index
            for t in range(2000, 40_001, 2000)]
    assert runs == sorted(runs) and runs[-1] > 0


def test_pending_labels_count_as_losses():
    r = stream(30_000, seed=2)
    full = certify_stream(r, ladder=LADDER, max_accuracy_drop=0.01)
    # Hold back every label of an accepted-under-some-candidate disagreement after row 5000.
    dis = (r.fallback >= 0) & (r.fallback != r.primary) & (np.arange(len(r)) > 5000)
    pending = with_rows(r, label=np.where(dis, -1, r.label))
    held = certify_stream(pending, ladder=LADDER, max_accuracy_drop=0.01)
    assert held.evidence["labels_pending"] == int((dis & r.label_requested).sum()) > 0
    assert held.ladder_index < full.ladder_index
    # Agreements pending cost nothing for a drop target (their loss is 0 whatever the label).
    agr = (r.fallback >= 0) & (r.fallback == r.primary)
    same = certify_stream(with_rows(r, label=np.where(agr, -1, r.label)), ladder=LADDER, max_accuracy_drop=0.01)
    assert same.ladder_index == full.ladder_index


def test_failed_shadow_calls_are_the_worst_case():
    r = stream(30_000, seed=4)
    full = certify_stream(r, ladder=LADDER, max_accuracy_drop=0.01)
    shadow = r.audited & (r.p_fallback < 1)
    fail = shadow & (np.random.default_rng(0).random(len(r)) < 0.05)
    broken = with_rows(r, fallback=np.where(fail, -1, r.fallback), label=np.where(fail, -1, r.label),
                       label_requested=r.label_requested & ~fail)
    c = certify_stream(broken, ladder=LADDER, max_accuracy_drop=0.01)
    assert c.evidence["shadow_failures"] == int(fail.sum()) > 0
    assert c.ladder_index < full.ladder_index


def test_agreement_certificate_needs_no_labels():
    r = stream(30_000, seed=5, agreement_rate=0.0, deferred_disagreement_rate=0.0)
    r = with_rows(r, label=np.full(len(r), -1), label_requested=np.zeros(len(r), bool), p_label=np.zeros(len(r)))
    truth = POP.truth(LADDER, "agreement", 0.97)
    c = certify_stream(r, ladder=LADDER, target_agreement=0.97)
    assert c.evidence["labels_received"] == 0
    assert c.feasible and truth[: c.ladder_index].all()
    assert abs(c.estimate - POP.value([c.threshold], "agreement")[0]) < 0.02


def test_ipw_estimate_is_close_to_the_population():
    r = stream(200_000, seed=6, agreement_rate=0.05)
    for objective, kw in (("accuracy_drop", {"max_accuracy_drop": 0.05}),
                          ("relative_accuracy", {"target_relative_accuracy": 0.9})):
        c = certify_stream(r, ladder=LADDER, **kw)
        want = POP.value([c.threshold], objective)[0]
        assert abs(c.estimate - want) < 0.01, (objective, c.estimate, want)


def test_min_probability_must_bound_the_weights():
    r = stream(5000)
    with pytest.raises(ValueError, match="min_probability"):
        certify_stream(r, ladder=LADDER, max_accuracy_drop=0.01, min_probability=0.9)


def test_default_ladder_skips_the_warmup_rows():
    r = stream(800)
    assert not certify_stream(r, max_accuracy_drop=0.05).feasible  # fewer rows than the warm-up
    c = certify_stream(stream(20_000), max_accuracy_drop=0.05)
    assert c.feasible and c.evidence["n_seen"] == 20_000


def test_alarm_fires_after_drift_and_restarts_identically():
    n, drift = 60_000, 20_000
    t = float(LADDER[8])
    r = simulate_records(POP, n, np.random.default_rng(7), deployed_threshold=t, audit_rate=0.25,
                         ladder_floor=float(LADDER[-1]), deferred_disagreement_rate=0.5, drift_at=drift,
                         drift_drop=0.05)
    e = ThresholdEProcess(t, "accuracy_drop", 0.01, min_probability=0.25)
    for k in range(5000, drift + 1, 5000):
        e.update(r.head(k))
    assert not e.alarm
    saved = json.loads(json.dumps(e.to_dict()))
    for k in range(drift + 5000, n + 1, 5000):
        e.update(r.head(k))
    assert e.alarm and drift < e.alarm_at <= n
    again = ThresholdEProcess.from_dict(saved)
    for k in range(drift + 5000, n + 1, 5000):
        again.update(r.head(k))
    assert again == e
    with pytest.raises(ValueError, match="every record"):
        e.update(r.head(10))
    assert replace(e, alarm_at=None).alarm is False


def test_policies():
    c = certify_stream(stream(), ladder=LADDER, max_accuracy_drop=0.01)
    assert c.feasible
    strict = float(LADDER[0]) + 1e-9
    assert policy_action("alert", alarm=True, deployed_threshold=0.5, certificate=c).threshold is None
    assert policy_action("fallback_all", alarm=True, deployed_threshold=0.5).threshold == np.inf
    a = policy_action("tighten", alarm=True, deployed_threshold=0.5, certificate=c)
    assert a.action == "tighten" and a.threshold == c.threshold
    b = policy_action("tighten", alarm=True, deployed_threshold=0.5, conservative_threshold=strict)
    assert b.threshold == strict
    assert policy_action("alert", alarm=False, deployed_threshold=1.0, certificate=c).action == "recommend"
    lo = policy_action("alert", alarm=False, deployed_threshold=1.0, certificate=c, loosen=True)
    assert lo.action == "loosen" and lo.threshold == c.threshold
    assert policy_action("alert", alarm=False, deployed_threshold=0.0, certificate=c).action == "none"
    with pytest.raises(ValueError, match="policy"):
        policy_action("panic", alarm=True, deployed_threshold=0.5)


def test_absolute_accuracy_target_needs_labels_on_every_kind_of_input():
    r = stream(60_000, seed=8, agreement_rate=0.05)
    truth = POP.truth(LADDER, "accuracy", 0.88)
    c = certify_stream(r, ladder=LADDER, target_accuracy=0.88)
    assert c.feasible and truth[: c.ladder_index].all()
    e = ThresholdEProcess(float(LADDER[3]), "accuracy", 0.88)
    e.update(r)
    assert not e.alarm
