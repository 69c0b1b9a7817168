"""selection/bounds.py and the certificates (accepted, paired, relative, planner, disagreements):
hand-checked cases, label budgets, errors.

The statistical validity of every procedure over many draws is in tests/test_validity.py.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy.stats import binom

from confroute.exceptions import ThresholdWarning
from confroute.selection.bounds import (
    betting_test,
    binomial_pvalue,
    clopper_pearson,
    fallback_procedure,
    fixed_sequence,
)
from confroute.core.decision import threshold_path
from confroute.selection.accepted import certify_accepted_accuracy, fallback_weights, select_accepted
from confroute.selection.certificate import Certificate
from confroute.selection.disagreements import certify_from_disagreements, needs_label
from confroute.selection.paired import paired_counts, select_paired
from confroute.selection.planner import plan_labels
from confroute.selection.relative import certify_relative_accuracy

from _selection import choose


def test_the_certify_overview_still_names_every_procedure():
    from confroute.selection import certify

    assert certify.certify_accepted_accuracy is certify_accepted_accuracy
    assert certify.certify_relative_accuracy is certify_relative_accuracy
    assert certify.threshold_path is threshold_path and certify.Certificate is Certificate


# --------------------------------------------------------------------------- bounds
def test_clopper_pearson_is_importable_from_both_places_and_matches_the_tails():
    from confroute.selection.thresholds import clopper_pearson as old

    assert old is clopper_pearson
    u = clopper_pearson(3, 40, 0.05)
    assert binom.cdf(3, 40, u) == pytest.approx(0.05, abs=1e-9)
    # p-value <= delta exactly when the bound is <= p0
    for k, m in [(0, 29), (3, 100), (10, 80)]:
        for p0 in (0.05, 0.1, 0.2):
            assert (binomial_pvalue(k, m, p0) <= 0.05) == (clopper_pearson(k, m, 0.05) <= p0)


def test_fixed_sequence_counts_the_leading_run():
    r = np.array([[True, True, False, True], [False, True, True, True], [True, True, True, True]])
    assert fixed_sequence(r).tolist() == [2, 0, 4]
    assert fixed_sequence(np.zeros((3, 0), bool)).tolist() == [0, 0, 0]


def test_fallback_procedure_carries_level_and_restarts():
    p = np.array([0.03, 0.045, 0.2, 0.009, 0.012])
    w = np.array([0.6, 0.0, 0.0, 0.2, 0.2])
    rej, lev = fallback_procedure(p, w, 0.05)
    # 0.03 at 0.03: rejected; 0.045 > 0.03: the chain breaks; restart at 3 with 0.01: 0.009
    # rejected; 4 gets 0.01 + 0.01 = 0.02 and 0.012 passes.
    assert rej.tolist() == [True, False, False, True, True]
    assert lev[[0, 1, 3, 4]] == pytest.approx([0.03, 0.03, 0.01, 0.02])
    # All weight on the first hypothesis: plain fixed-sequence at delta.
    rej1, _ = fallback_procedure(p, [1, 0, 0, 0, 0], 0.05)
    assert rej1.tolist() == [True, True, False, False, False]
    with pytest.raises(ValueError, match="sum to at most 1"):
        fallback_procedure(p, [0.9, 0.9, 0, 0, 0], 0.05)


def test_betting_test_rejects_a_clear_margin_and_not_the_null():
    rng = np.random.default_rng(0)
    errors = rng.random((200, 1000)) < 0.1  # error rate exactly at the 10% boundary (null true)
    y = errors - 0.1
    assert betting_test(y, 0.05, upper=0.9, lower=-0.1).mean() <= 0.05 + 0.04
    clear = (rng.random(1000) < 0.03) - 0.1
    assert betting_test(clear, 0.05, upper=0.9, lower=-0.1)
    with pytest.raises(ValueError, match="outside"):
        betting_test(np.array([2.0]), 0.05, upper=1.0, lower=-1.0)


# --------------------------------------------------------------------------- accepted accuracy
def test_threshold_path_groups_ties_and_counts():
    t, order, ends = threshold_path([0.2, 0.9, 0.9, 0.5])
    assert t.tolist() == [math.inf, 0.9, 0.5, 0.2] and ends.tolist() == [0, 2, 3, 4]
    with pytest.raises(ValueError, match="NaN"):
        threshold_path([0.2, np.nan])


def test_single_chain_stops_at_first_failure_and_fallback_restarts():
    # 400 inputs, all right except the 3rd most confident: a chain from the top breaks at once.
    s = np.linspace(1, 0, 400)
    ok = np.ones(400, bool)
    ok[2] = False
    single = certify_accepted_accuracy(s, ok, target=0.9, delta=0.05, method="single")
    assert not single.certified and single.reason and "most confident" in single.reason
    fb = certify_accepted_accuracy(s, ok, target=0.9, delta=0.05, method="fallback")
    # The early chain is lost (0.4 delta), and so is the main start (1 error in 40 accepted fails
    # at 0.5 delta) and the first restart (80 accepted, 0.1 delta / 3); the restarts at 160 and
    # 320 accepted pass and their levels add up.
    assert fb.certified and fb.coverage == 1.0
    assert fb.bound == pytest.approx(1 - clopper_pearson(1, 400, 0.05 * 0.1 * 2 / 3), abs=1e-12)
    multi = certify_accepted_accuracy(s, ok, target=0.9, delta=0.05, method="multistart")
    assert multi.certified and multi.coverage == 1.0


def test_fallback_weights_sum_to_one_and_start_where_documented():
    m = np.arange(0, 2001, dtype=float)
    w = fallback_weights(m, 2000, 0.9, 0.05)
    assert w.sum() == pytest.approx(1.0)
    starts = np.flatnonzero(w).tolist()
    # early chain: zero errors pass from ceil(log(0.02) / log(0.9)) = 38 accepted; main at n/10;
    # restarts at 400, 800, 1600.
    assert starts == [38, 200, 400, 800, 1600]
    assert w[starts].tolist() == pytest.approx([0.4, 0.5, 0.1 / 3, 0.1 / 3, 0.1 / 3])


def test_every_method_certifies_an_easy_population_and_reports_its_bound():
    rng = np.random.default_rng(5)
    s = rng.random(3000)
    ok = rng.random(3000) < 0.7 + 0.3 * s
    for method in ("fallback", "single", "multistart", "split", "betting"):
        c = certify_accepted_accuracy(s, ok, target=0.9, delta=0.05, method=method)
        assert isinstance(c, Certificate) and c.certified, method
        assert 0.2 < c.coverage < 0.9
        if method != "betting":
            assert c.bound >= 0.9
        json.dumps(c.to_dict())


def test_select_accepted_is_vectorised_over_draws():
    rng = np.random.default_rng(2)
    m = np.tile(np.arange(0, 301, dtype=float), (5, 1))
    k = np.cumsum(rng.random((5, 301)) < 0.04, axis=1).astype(float)
    k[:, 0] = 0
    rows, _ = select_accepted(m, k, 300, 0.9, 0.05, "fallback")
    for i in range(5):
        one, _ = select_accepted(m[i], k[i], 300, 0.9, 0.05, "fallback")
        assert int(one) == rows[i]


def test_accepted_reason_when_too_few_inputs():
    c = certify_accepted_accuracy(np.linspace(1, 0, 20), np.ones(20, bool), target=0.9, delta=0.05)
    assert not c.certified and c.index == 0 and c.threshold == math.inf
    assert "too few accepted inputs" in c.reason


# --------------------------------------------------------------------------- paired
def _pair(n=2000, seed=1):
    rng = np.random.default_rng(seed)
    ref = rng.random(n) < 0.9
    s = rng.random(n)
    cheap = np.where(rng.random(n) < 0.9 * s, ref, rng.random(n) < 0.6)
    return s, np.stack([cheap, ref])


def test_paired_counts_and_the_two_stage_path_agree():
    s, c = _pair(500)
    thresholds, order, ends = threshold_path(s)
    answered = np.stack([np.where(s >= t, 0, 1) for t in thresholds[1:]])
    L, G, cov = paired_counts(answered, c)
    loss = (~c[0] & c[1])[order]
    assert L.tolist() == np.cumsum(loss)[ends[1:] - 1].tolist()
    a = certify_relative_accuracy(s, c, epsilon=0.02, delta=0.05)
    b = certify_relative_accuracy(stage_correct=c, answered_by=answered, candidates=thresholds[1:],
                                  epsilon=0.02, delta=0.05)
    assert a.certified and (a.threshold, a.coverage, a.bound) == (b.threshold, b.coverage, b.bound)


def test_ratio_cp_losses_is_clopper_pearson_on_losses_among_reference_right():
    s, c = _pair()
    cert = certify_relative_accuracy(s, c, epsilon=0.02, delta=0.05)
    t, order, ends = threshold_path(s)
    L = np.r_[0, np.cumsum((~c[0] & c[1])[order])][ends]
    F = int(c[1].sum())
    up = clopper_pearson(L, F, 0.05)
    run = int(fixed_sequence(up[1:] <= 0.02))
    assert cert.index == run and cert.bound == pytest.approx(1 - up[run])
    # Only losses and gains matter: flipping the labels of an agreement changes nothing.
    c2 = c.copy()
    agree = np.flatnonzero(c[0] == c[1])[:50]
    c2[:, agree] = ~c2[:, agree]
    assert certify_relative_accuracy(s, c2, epsilon=0.02, kind="difference").index == \
        certify_relative_accuracy(s, c, epsilon=0.02, kind="difference").index


def test_paired_beats_unpaired_where_models_mostly_agree():
    s, c = _pair(1500, seed=3)
    paired = certify_relative_accuracy(s, c, epsilon=0.01, delta=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        unpaired = choose(s, c[0], c[1], target_system_accuracy=0.99 * c[1].mean(), delta=0.05)
    assert paired.certified and paired.coverage > unpaired.coverage + 0.1


def test_select_paired_conditional_uses_gains():
    L = np.array([0, 5, 10, 15])
    G = np.array([0, 30, 60, 90])
    row_cp, _ = select_paired(L, G, 2000, 0.005, 0.05, bound="cp_losses")
    row_c, up = select_paired(L, G, 2000, 0.005, 0.05, bound="conditional")
    assert row_cp == 0 and row_c == 3 and up <= 0.005


def test_three_stage_cascade_candidates():
    rng = np.random.default_rng(4)
    n = 3000
    ref = rng.random(n) < 0.92
    mid = np.where(rng.random(n) < 0.8, ref, rng.random(n) < 0.5)
    cheap = np.where(rng.random(n) < 0.6, ref, rng.random(n) < 0.5)
    s0, s1 = rng.random(n), rng.random(n)
    cands = [(t0, t1) for t0, t1 in [(1.1, 1.1), (0.95, 0.9), (0.9, 0.8), (0.85, 0.7), (0.8, 0.6)]]
    answered = np.stack([np.where(s0 >= a, 0, np.where(s1 >= b, 1, 2)) for a, b in cands])
    cert = certify_relative_accuracy(stage_correct=np.stack([cheap, mid, ref]), answered_by=answered,
                                     candidates=cands, epsilon=0.05, kind="difference", delta=0.05)
    assert cert.certified and isinstance(cert.threshold, tuple) and cert.threshold in cands
    json.dumps(cert.to_dict())


def test_paired_reason_and_planner_when_nothing_certifies():
    s, c = _pair(150)
    cert = certify_relative_accuracy(s, c, epsilon=0.005, delta=0.05)
    assert not cert.certified and "too few inputs" in cert.reason
    assert cert.labels_needed is not None and cert.labels_needed > 150
    with pytest.warns(ThresholdWarning, match="too few inputs"):
        ch = choose(s, c[0], c[1], target_relative_accuracy=0.995)
    assert not ch.feasible and ch.m == 0 and math.isnan(ch.guaranteed)


# --------------------------------------------------------------------------- label budgets
def test_needs_label_selects_disagreements_only():
    preds = np.array([[0, 1, 2, 2, 1], [0, 2, 2, 1, 1]])
    assert needs_label(preds).tolist() == [False, True, False, True, False]
    scores = np.array([0.9, 0.2, 0.9, 0.8, 0.1])
    assert needs_label(preds, scores=scores, threshold=0.5).tolist() == [False, False, False, True, False]
    cascade = np.array([[0, 1, 2, 2], [0, 1, 1, 2], [0, 0, 0, 0]])
    answered = np.array([[0, 0, 1, 2]])
    assert needs_label(cascade, answered_by=answered).tolist() == [False, True, True, False]


def test_certify_from_disagreements_matches_full_labels():
    rng = np.random.default_rng(7)
    n = 3000
    y = rng.integers(0, 3, n)
    ref_p = np.where(rng.random(n) < 0.9, y, (y + 1) % 3)
    s = rng.random(n)
    cheap_p = np.where(rng.random(n) < 0.85 * s + 0.1, ref_p, rng.integers(0, 3, n))
    preds = np.stack([cheap_p, ref_p])
    full = certify_relative_accuracy(s, preds == y, epsilon=0.02, kind="difference", delta=0.05)
    ask = needs_label(preds)
    partial = np.ma.masked_all(n, dtype=int)
    partial[ask] = y[ask]
    cert = certify_from_disagreements(preds, partial, scores=s, epsilon=0.02, kind="difference", delta=0.05)
    assert cert.certified and cert.index == full.index and cert.bound == pytest.approx(full.bound)
    # Labelling in score order can stop at the first failing candidate: far fewer labels.
    t, _, _ = threshold_path(s)
    assert cert.labels_used == int((ask & (s >= t[cert.index + 1])).sum()) < ask.sum() / 5
    # A missing label on a disagreement is an error, not a silent guess.
    partial[np.flatnonzero(ask)[0]] = np.ma.masked
    with pytest.raises(ValueError, match="have no label"):
        certify_from_disagreements(preds, partial, scores=s, epsilon=0.02, kind="difference")
    with pytest.raises(ValueError, match="reference_lower"):
        certify_from_disagreements(preds, y, scores=s, epsilon=0.02, kind="ratio")
    ratio = certify_from_disagreements(preds, np.ma.masked_array(y, mask=~ask), scores=s, epsilon=0.03,
                                       kind="ratio", reference_lower=0.88)
    assert ratio.certified and ratio.bound is None and math.isnan(ratio.empirical)


def test_planner_is_consistent_with_the_bound():
    plan = plan_labels(0.03, 0.001, 0.02, epsilon=0.005, kind="ratio", reference_accuracy=0.9)
    n = plan.n_inputs_estimated  # the certificate's own test: F counted from the same labels
    # At the planned size the expected counts pass, one input fewer they do not.
    F = round(0.9 * n)
    assert select_paired([0, round(0.001 * n)], [0, round(0.02 * n)], n, 0.005, 0.05, kind="ratio",
                         fallback_correct=F)[0] == 1
    m = n - 1
    assert select_paired([0, round(0.001 * m)], [0, round(0.02 * m)], m, 0.005, 0.05, kind="ratio",
                         fallback_correct=round(0.9 * m))[0] == 0
    assert plan.n_labels == math.ceil(plan.n_inputs_always * 0.03) and plan.n_labels < plan.n_labels_unpaired
    assert plan_labels(0.03, 0.01, 0.0, epsilon=0.005, reference_accuracy=0.9).n_inputs is None
    with pytest.raises(ValueError, match="reference_accuracy"):
        plan_labels(0.03, 0.001, epsilon=0.005)
    json.dumps(plan.to_dict())


# --------------------------------------------------------------------------- choose_thresholds wiring
def test_choose_thresholds_paired_objectives_and_methods():
    s, c = _pair()
    ch = choose(s, c[0], c[1], target_relative_accuracy=0.98)
    cert = certify_relative_accuracy(s, c, epsilon=0.02)
    assert ch.feasible and ch.objective == "relative_accuracy" and ch.procedure == "paired_cp_losses"
    assert ch.threshold == cert.threshold and ch.guaranteed == pytest.approx(cert.bound)
    assert "system / fallback accuracy" in str(ch)
    d = choose(s, c[0], c[1], max_accuracy_drop=0.02, bound="conditional")
    assert d.objective == "accuracy_drop" and d.guaranteed >= -0.02 and d.procedure == "paired_conditional"
    a = choose(s, c[0], target_accuracy=0.75, method="fallback")
    assert a.feasible and a.threshold == certify_accepted_accuracy(s, c[0], target=0.75).threshold
    with pytest.raises(ValueError, match="fallback_correct"):
        choose(s, c[0], target_relative_accuracy=0.98)
    # delta=None: the same figure (system - fallback accuracy), empirically, with no guarantee.
    e = choose(s, c[0], c[1], max_accuracy_drop=0.02, delta=None)
    assert e.feasible and e.empirical >= -0.02 and math.isnan(e.guaranteed) and e.procedure == "empirical_loosest"
    assert e.empirical == pytest.approx(e.system_accuracy - c[1].mean())
    with pytest.raises(ValueError, match="target_accuracy only"):
        choose(s, c[0], target_coverage=0.5, method="fallback")
    with pytest.raises(ValueError, match="method must be one of"):
        choose(s, c[0], target_accuracy=0.9, method="magic")


def test_bad_inputs_name_the_problem():
    s, c = _pair(100)
    with pytest.raises(ValueError, match="exactly one of scores"):
        certify_relative_accuracy(s, c, answered_by=np.zeros((1, 100), int), epsilon=0.01)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        certify_relative_accuracy(s, c, epsilon=0)
    with pytest.raises(ValueError, match="two rows"):
        certify_relative_accuracy(s, np.stack([c[0], c[0], c[1]]), epsilon=0.01)
    with pytest.raises(ValueError, match="stage indices"):
        certify_relative_accuracy(stage_correct=c, answered_by=np.full((1, 100), 5), epsilon=0.01)
    with pytest.raises(ValueError, match="boolean"):
        certify_accepted_accuracy(s, np.full(100, 2), target=0.9)
    with pytest.raises(ValueError, match="method must be one of"):
        certify_accepted_accuracy(s, c[0], target=0.9, method="nope")
    with pytest.raises(ValueError, match="target must lie"):
        certify_accepted_accuracy(s, c[0], target=1.0)


def test_simulated_population_truth_matches_its_draws():
    from confroute.selection.simulate import Population

    pop = Population.perfect(levels=50)
    rng = np.random.default_rng(0)
    path = Population.path(pop.draw_counts(200_000, 1, rng))
    row = 20
    acc = (path["m"][0, row] - path["k"][0, row]) / path["m"][0, row]
    assert acc == pytest.approx(pop.accepted_accuracy()[row], abs=0.01)
    assert path["m"][0, row] / 200_000 == pytest.approx(pop.coverage()[row], abs=0.01)
    drop = (path["L"][0, row] - path["G"][0, row]) / 200_000
    assert drop == pytest.approx(pop.drop()[row], abs=0.005)
    assert path["F"][0] / 200_000 == pytest.approx(pop.reference_accuracy(), abs=0.005)
