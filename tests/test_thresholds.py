"""choose_thresholds() for two stages: hand-checked choices, and a simulation of the finite-sample guarantee."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import binom

from confroute import ThresholdChoice, choose_thresholds
from confroute.evaluation.evaluate import evaluate
from confroute.exceptions import ThresholdWarning
from confroute.selection.bounds import clopper_pearson

from _selection import choose


def population_accuracy(threshold: float) -> float:
    """Accuracy on accepted inputs when s ~ U(0, 1) and P(correct | s) = 0.7 + 0.3 s."""
    return 0.7 + 0.3 * (1 + threshold) / 2


def test_clopper_pearson_matches_binomial_tails():
    u = clopper_pearson(3, 40, 0.05)
    assert binom.cdf(3, 40, u) == pytest.approx(0.05, abs=1e-9)
    lo = clopper_pearson(30, 40, 0.05, side="lower")
    assert binom.sf(29, 40, lo) == pytest.approx(0.05, abs=1e-9)
    assert clopper_pearson(5, 5, 0.1) == 1.0 and clopper_pearson(0, 5, 0.1, side="lower") == 0.0


@pytest.mark.parametrize("method", [None, "multistart"])  # None: the default, the fallback procedure
def test_guarantee_holds_in_simulation(method):
    """Over many calibration draws the chosen threshold's true accepted-set accuracy falls below
    the target in at most about delta of them; the empirical choice fails about half the time."""
    rng = np.random.default_rng(12345)
    target, delta, n, draws = 0.9, 0.1, 1000, 400
    guaranteed_fail = empirical_fail = 0
    coverages = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        for _ in range(draws):
            s = rng.random(n)
            correct = rng.random(n) < 0.7 + 0.3 * s
            c = choose(s, correct, target_accuracy=target, delta=delta, method=method)
            e = choose(s, correct, target_accuracy=target, delta=None)
            guaranteed_fail += c.feasible and population_accuracy(c.threshold) < target
            empirical_fail += e.feasible and population_accuracy(e.threshold) < target
            coverages.append(c.coverage)
    # Binomial(400, 0.1) exceeds 0.13 * 400 with probability < 2.5%; the seed is fixed anyway.
    assert guaranteed_fail / draws <= delta + 0.03
    assert empirical_fail / draws > 0.3
    # And it is not trivially safe: it keeps a useful share (the optimum is coverage 2/3).
    assert np.mean(coverages) > 0.4


def test_accuracy_choice_is_loosest_passing_in_sequence():
    # 100 perfect inputs then 100 coin flips; scores descending.
    s = np.linspace(1, 0, 200)
    correct = np.r_[np.ones(100, bool), np.arange(100) % 2 == 0]
    c = choose(s, correct, target_accuracy=0.9, delta=0.05, n_starts=1)
    assert isinstance(c, ThresholdChoice) and c.feasible
    m, k = c.m, c.k
    assert binom.cdf(k, m, 0.1) <= 0.05  # the chosen row passes
    # The next looser threshold fails the test (so the sequence stopped there).
    k_next = int((~correct[: m + 1]).sum())
    assert binom.cdf(k_next, m + 1, 0.1) > 0.05
    assert c.threshold == pytest.approx(s[m - 1])
    assert c.guaranteed == pytest.approx(1 - clopper_pearson(k, m, 0.05))
    assert c.guaranteed >= 0.9 and c.empirical == pytest.approx((m - k) / m)
    # Zero errors pass only from ceil(log 0.05 / log 0.9) = 29 accepted inputs on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        assert not choose(s[:28], np.ones(28, bool), target_accuracy=0.9, method="multistart").feasible
    assert choose(s[:29], np.ones(29, bool), target_accuracy=0.9, method="multistart").m == 29


def test_multiple_starts_survive_an_early_mistake():
    # 200 inputs, all right except the 3rd most confident: a single sequence stops at its first
    # test (29 accepted, 1 error); chains starting further down still reach the bottom.
    s = np.linspace(1, 0, 200)
    correct = np.ones(200, bool)
    correct[2] = False
    with pytest.warns(ThresholdWarning):
        single = choose(s, correct, target_accuracy=0.9, delta=0.05, n_starts=1)
    assert not single.feasible
    multi = choose(s, correct, target_accuracy=0.9, delta=0.05, method="multistart")
    assert multi.feasible and multi.m == 200 and multi.k == 1
    # Its bound uses the per-chain level delta / J (J = 3 here: starts at 39, 78, 156 accepted).
    assert multi.guaranteed == pytest.approx(1 - clopper_pearson(1, 200, 0.05 / 3))


def test_infeasible_accuracy_target_accepts_nothing_and_warns():
    s = np.linspace(1, 0, 50)
    correct = np.ones(50, bool)
    with pytest.warns(ThresholdWarning, match="no threshold meets"):
        c = choose(s, correct, target_accuracy=0.99, delta=0.05)  # needs m >= 299
    assert not c.feasible and c.threshold == math.inf and c.m == 0


def test_system_accuracy_target_with_fallback():
    rng = np.random.default_rng(3)
    n = 4000
    s = rng.random(n)
    pc = rng.random(n) < 0.6 + 0.4 * s
    fc = rng.random(n) < 0.95
    res = evaluate(labels=np.zeros(n, int), primary=np.where(pc, 0, 1), scores=s,
                   fallback=np.where(fc, 0, 1), cost_model=[1.0, 10.0])
    c = choose_thresholds(res, target_system_accuracy=0.9, delta=0.05)
    assert c.feasible and c.system_accuracy >= 0.9
    errors = round(n * (1 - c.system_accuracy))
    assert c.guaranteed == pytest.approx(1 - clopper_pearson(errors, n, 0.05))
    assert c.guaranteed >= 0.9
    assert c.cost_per_input == pytest.approx(1.0 + (1 - c.coverage) * 10.0)
    # From arrays, the same choice.
    c2 = choose(s, pc, fc, target_system_accuracy=0.9, delta=0.05)
    assert c2.threshold == c.threshold
    with pytest.raises(ValueError, match="fallback"):
        choose(s, pc, target_system_accuracy=0.9)


def test_coverage_cost_and_savings_targets():
    s = np.arange(1000) / 1000.0
    correct = np.ones(1000, bool)
    e = choose(s, correct, target_coverage=0.3, delta=None)
    assert e.coverage == pytest.approx(0.3) and e.threshold == pytest.approx(0.7)
    g = choose(s, correct, target_coverage=0.3, delta=0.05)
    assert g.guaranteed >= 0.3 and g.coverage > 0.3
    assert g.guaranteed == pytest.approx(clopper_pearson(g.m, 1000, 0.05, side="lower"))
    # Budget 4.0 per input with prices (1, 5): need coverage >= (1 + 5 - 4) / 5 = 0.4.
    b = choose(s, correct, max_cost_per_input=4.0, delta=None, cost_model=[1.0, 5.0])
    assert b.coverage == pytest.approx(0.4) and b.cost_per_input == pytest.approx(4.0)
    sv = choose(s, correct, min_savings=0.5, delta=0.05, cost_model=[1.0, 5.0])
    assert sv.guaranteed >= 0.5 and sv.savings >= 0.5
    with pytest.warns(ThresholdWarning):
        bad = choose(s, correct, max_cost_per_input=0.5, cost_model=[1.0, 5.0])
    assert not bad.feasible and bad.m == 1000


def test_argument_errors_and_to_dict():
    s, c = np.array([0.2, 0.9]), np.array([True, False])
    with pytest.raises(ValueError, match="exactly one"):
        choose(s, c)
    with pytest.raises(ValueError, match="exactly one"):
        choose(s, c, target_accuracy=0.9, target_coverage=0.5)
    with pytest.raises(ValueError, match="delta"):
        choose(s, c, target_accuracy=0.9, delta=1.5)
    with pytest.raises(ValueError, match="prices"):
        choose(s, c, min_savings=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        d = choose(s, c, target_accuracy=0.9).to_dict()
    assert d["threshold"] is None and d["feasible"] is False and d["m"] == 0
    text = str(choose(s, c, target_coverage=0.5, delta=None))
    assert "coverage 50.0%" in text and "threshold 0.9" in text


def test_first_failure_rule_stops_at_a_dip_that_loosest_jumps_over():
    # Inputs sorted by descending score. The primary is wrong at positions 3 and 4, the fallback
    # at positions 6-9. System accuracy with the first m inputs accepted:
    # m=0..3: 0.6; m=4: 0.5; m=5: 0.4; m=6: 0.5; ... m=10: 0.8 (a return above the target).
    scores = np.linspace(1.0, 0.1, 10)
    primary = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 1], dtype=bool)
    fallback = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    kw = dict(fallback_correct=fallback, target_system_accuracy=0.55, delta=None)
    loosest = choose(scores, primary, **kw)
    first = choose(scores, primary, rule="first_failure", **kw)
    assert loosest.coverage == 1.0 and loosest.system_accuracy == pytest.approx(0.8)
    assert first.coverage == pytest.approx(0.3) and first.threshold == pytest.approx(scores[2])
    assert first.system_accuracy == pytest.approx(0.6)
    with pytest.raises(ValueError, match="rule must be"):
        choose(scores, primary, rule="x", **kw)


def test_first_failure_rule_against_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(5, 60))
        s = rng.random(n)
        pc = rng.random(n) < 0.8
        fc = rng.random(n) < 0.9
        goal = float(rng.uniform(0.6, 0.95))
        order = np.argsort(-s, kind="stable")
        best = np.inf
        for m in range(n + 1):  # walk down distinct-score cut points
            if m and m < n and s[order[m - 1]] == s[order[m]]:
                continue
            accepted = np.zeros(n, dtype=bool)
            accepted[order[:m]] = True
            acc = np.where(accepted, pc, fc).mean()
            if acc < goal - 1e-12:
                break
            best = s[order[m - 1]] if m else np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThresholdWarning)
            c = choose(s, pc, fc, target_system_accuracy=goal, delta=None, rule="first_failure")
        assert c.threshold == best
