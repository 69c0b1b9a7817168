"""N-stage cascade evaluation and joint threshold search: hand-computed cases, the router, brute force."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
from _helpers import SpyPredictor, binary
from hypothesis import given, settings
from hypothesis import strategies as st

from confroute import Cascade, CostModel, ThresholdRouter, choose_thresholds
from confroute.evaluation.evaluate import Evaluation
from confroute.evaluation.grid import cascade_counts, quantile_grid
from confroute.selection.cascade import choose_cascade
from confroute.evaluation.evaluate import evaluate
from confroute.exceptions import ThresholdWarning

# Six inputs; each stage returns P(pos). Labels: pos for even inputs.
S1 = {0: 0.95, 1: 0.90, 2: 0.70, 3: 0.60, 4: 0.55, 5: 0.85}   # stage 1: says pos/neg as >0.5
S2 = {0: 0.80, 1: 0.10, 2: 0.90, 3: 0.65, 4: 0.95, 5: 0.30}
S3 = {0: 0.99, 1: 0.01, 2: 0.99, 3: 0.01, 4: 0.99, 5: 0.01}   # the oracle
Y = np.array([1, 0, 1, 0, 1, 0])
NAMES = np.array(["neg", "pos"])[Y]  # the same labels in the stages' label space
PRICES = [1.0, 4.0, 20.0]


def three_stage(t1, t2):
    stages = [SpyPredictor(lambda x, t=t: binary(t[x]), classes=["neg", "pos"], name=nm)
              for t, nm in ((S1, "small"), (S2, "medium"), (S3, "large"))]
    return Cascade(stages, thresholds=[t1, t2], cost_model=CostModel.per_sample(PRICES)), stages


def test_three_mock_stages_hand_computed():
    # Thresholds 0.88 / 0.85 (max-prob):
    #   stage 1 max-probs 0.95 0.90 0.70 0.60 0.55 0.85 -> accepts inputs 0, 1 (both "pos"; 1 wrong)
    #   stage 2 on 2..5: max-probs 0.90 0.65 0.95 0.70 -> accepts 2 (pos, right) and 4 (pos, right)
    #   stage 3 answers 3 and 5 (right).
    # Cost: 6 x 1 + 4 x 4 + 2 x 20 = 62, i.e. 62/6 per input; baseline 6 x 20 = 120.
    router, stages = three_stage(0.88, 0.85)
    routed = router.route(list(range(6)))
    assert routed.stage.tolist() == [0, 0, 1, 2, 1, 2]
    assert routed.total_cost == pytest.approx(62.0)
    res = evaluate(router, list(range(6)), NAMES, grid=[[0.88], [0.85]], progress=False)
    assert isinstance(res, Evaluation)
    # evaluate() ran each stage once, on every input.
    assert [sum(len(c) for c in s.calls) for s in stages] == [6 + 6, 4 + 6, 2 + 6]  # route + evaluate
    p = res.row(0)
    assert p.shares == pytest.approx((2 / 6, 2 / 6, 2 / 6))
    assert p.system_accuracy == pytest.approx(5 / 6)
    assert p.cost_per_input == pytest.approx(62 / 6)
    assert p.savings == pytest.approx(1 - 62 / 120)
    assert res.stage_accuracy == pytest.approx({"small": 3 / 6, "medium": 5 / 6, "large": 1.0})


def test_table_rows_match_cascade_route_on_same_thresholds():
    router, _ = three_stage(0.5, 0.5)
    inputs = list(range(6))
    res = evaluate(router, inputs, NAMES, grid=4, progress=False)
    assert res.n_rows == len(res.grids[0]) * len(res.grids[1])
    for r in range(res.n_rows):
        t1, t2 = res.table["thresholds"][r]
        if not (np.isfinite(t1) and np.isfinite(t2)):
            continue  # the router cannot take "accept nothing" for a [0, 1] score
        cascade, _ = three_stage(t1, t2)
        routed = cascade.route(inputs)
        counts = np.bincount(routed.stage, minlength=3) / 6
        assert res.table["shares"][r] == pytest.approx(counts)
        assert res.table["system_accuracy"][r] == pytest.approx(np.mean(routed.labels == NAMES))
        assert res.table["cost_per_input"][r] == pytest.approx(routed.total_cost / 6)
        assert res.at([t1, t2]).system_accuracy == pytest.approx(res.table["system_accuracy"][r])


def test_two_stage_evaluate_unchanged_and_stages_form():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.45, 0.55]])
    y = np.array([0, 1, 1, 0])
    a = evaluate(labels=y, primary=probs, fallback=np.array([0, 1, 1, 1]), cost_model=[1.0, 10.0])
    b = evaluate(labels=y, stages=[probs, np.array([0, 1, 1, 1])], cost_model=[1.0, 10.0])
    assert isinstance(b, Evaluation)
    for col in a.table:
        np.testing.assert_array_equal(a.table[col], b.table[col])
    # The cascade grid over two stages agrees with the exact sweep at every grid threshold.
    c = evaluate(labels=y, stages=[probs, np.array([0, 1, 1, 1])], cost_model=[1.0, 10.0], grid=10)
    for r in range(c.n_rows):
        t = c.table["thresholds"][r, 0]
        op = a.at(t)
        assert c.table["system_accuracy"][r] == pytest.approx(op.system_accuracy)
        assert c.table["cost_per_input"][r] == pytest.approx(op.cost / 4)


def brute(scores, correct, grids, prices):
    """One routing pass per threshold tuple, straight from the definitions."""
    n = len(correct[0])
    rows = []
    for combo in itertools.product(*grids):
        stage = np.full(n, len(scores))
        for i in range(n):
            for s, t in enumerate(combo):
                if scores[s][i] >= t:
                    stage[i] = s
                    break
        ok = sum(correct[stage[i]][i] for i in range(n))
        cost = sum(sum(prices[: stage[i] + 1]) for i in range(n))
        rows.append((combo, np.bincount(stage, minlength=len(correct)), ok, cost / n))
    return rows


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 25), st.integers(2, 4), st.integers(0, 10_000))
def test_counts_match_brute_force(n, n_stages, seed):
    rng = np.random.default_rng(seed)
    scores = [rng.choice([0.1, 0.5, 0.6, 0.9, 1.0], n) for _ in range(n_stages - 1)]
    correct = [rng.random(n) < 0.7 for _ in range(n_stages)]
    grids = [quantile_grid(s, 3) for s in scores]
    prices = rng.uniform(0.1, 5, n_stages)
    res = evaluate(labels=np.zeros(n, int), stages=[np.where(c, 0, 1) for c in correct],
                   scores=scores, grid=grids, cost_model=prices)
    for r, (combo, counts, ok, cost) in enumerate(brute(scores, correct, grids, prices)):
        assert tuple(res.table["thresholds"][r]) == combo
        assert res.table["answered"][r].tolist() == counts.tolist()
        assert res.table["n_correct"][r] == ok
        assert res.table["cost_per_input"][r] == pytest.approx(cost)


def synthetic(n, seed):
    """Three stages of rising quality (and price) on a binary task."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    stages = []
    for noise in (5.0, 3.0, 1.0):
        p = 1 / (1 + np.exp(-(2 * y - 1) * 2.5 + rng.normal(0, noise, n)))
        stages.append(np.c_[1 - p, p])
    return y, stages


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.75, 0.99), st.floats(2.0, 25.0), st.sampled_from([None, 0.1]))
def test_search_matches_brute_force(seed, target, budget, delta):
    y, stages = synthetic(300, seed)
    res = evaluate(labels=y, stages=stages, cost_model=[1.0, 3.0, 25.0], grid=8)
    acc, cost = res.table["system_accuracy"], res.table["cost_per_input"]
    m = res.n_rows
    if delta is None:
        acc_ok, cost_ok = acc >= target, cost <= budget
    else:
        from confroute.selection.bounds import clopper_pearson

        acc_ok = 1 - clopper_pearson(300 - res.table["n_correct"], 300, delta / m) >= target
        cost_ok = cost + (29.0 - 1.0) * np.sqrt(np.log(m / delta) / 600) <= budget  # cost in [1, 29]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        a = choose_thresholds(res, target_system_accuracy=target, delta=delta)
        b = choose_thresholds(res, max_cost_per_input=budget, delta=delta)
    # (a) cheapest feasible
    assert a.feasible == bool(acc_ok.any())
    if a.feasible:
        assert a.cost_per_input == pytest.approx(cost[acc_ok].min())
        assert a.system_accuracy >= target - 1e-12  # counts compare with the library's float tolerance
    # (b) most accurate within budget
    assert b.feasible == bool(cost_ok.any())
    if b.feasible:
        assert b.system_accuracy == pytest.approx(acc[cost_ok].max())
        assert b.cost_per_input <= budget + 1e-9
    # Coordinate descent: feasible whenever exhaustive is (it starts at the safe end), never better.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        ca = choose_thresholds(res, target_system_accuracy=target, delta=delta, method="coordinate")
    assert ca.feasible == a.feasible
    if a.feasible:
        assert ca.cost_per_input >= a.cost_per_input - 1e-12 and ca.system_accuracy >= target - 1e-12
        assert res.at(ca.thresholds).cost_per_input == pytest.approx(ca.cost_per_input)


def test_coordinate_is_exact_for_two_stages_and_cheap_for_four():
    y, stages = synthetic(2000, 1)
    two = evaluate(labels=y, stages=[stages[0], stages[2]], cost_model=[1.0, 25.0], grid=30)
    ex = choose_cascade(two, target_system_accuracy=0.9, delta=None)
    cd = choose_cascade(two, target_system_accuracy=0.9, delta=None, method="coordinate")
    assert cd.thresholds == ex.thresholds
    rng = np.random.default_rng(5)
    p = 1 / (1 + np.exp(-(2 * y - 1) * 2.5 + rng.normal(0, 4.0, y.size)))
    four = evaluate(labels=y, stages=[np.c_[1 - p, p], *stages], cost_model=[0.5, 1.0, 3.0, 25.0],
                    grid=10)
    assert four.n_rows == 11**3
    ex4 = choose_thresholds(four, target_system_accuracy=0.93)
    cd4 = choose_thresholds(four, target_system_accuracy=0.93, method="coordinate")
    assert cd4.feasible and ex4.feasible
    assert cd4.n_evaluated < ex4.n_evaluated / 10
    # Coordinate descent does not need the G^(N-1) table.
    lean = evaluate(labels=y, stages=[np.c_[1 - p, p], *stages], cost_model=[0.5, 1.0, 3.0, 25.0],
                    grid=10, table=False)
    assert lean.n_rows == 0 and lean.n_candidates == 11**3 and "no table" in repr(lean)
    assert choose_thresholds(lean, target_system_accuracy=0.93, method="coordinate") == cd4
    with pytest.raises(ValueError, match="full table"):
        choose_thresholds(lean, target_system_accuracy=0.93)
    # A local optimum, close to the global one here.
    assert cd4.cost_per_input <= 1.25 * ex4.cost_per_input


def test_chosen_thresholds_route_as_predicted():
    y, stages = synthetic(500, 2)
    res = evaluate(labels=y, stages=stages, cost_model=[1.0, 3.0, 25.0], grid=10)
    c = choose_thresholds(res, target_system_accuracy=0.9, delta=None)
    assert all(np.isfinite(c.thresholds))
    fns = [lambda xs, p=p: p[np.asarray(xs)] for p in stages]
    routed = Cascade(fns, thresholds=c.thresholds, cost_model=CostModel.per_sample([1.0, 3.0, 25.0])).route(
        np.arange(500))
    assert np.mean(routed.labels == y) == pytest.approx(c.system_accuracy)
    assert routed.total_cost / 500 == pytest.approx(c.cost_per_input)
    assert tuple(np.bincount(routed.stage, minlength=3) / 500) == pytest.approx(c.shares)


def test_best_exports_and_errors():
    y, stages = synthetic(200, 3)
    res = evaluate(labels=y, stages=stages, cost_model=[1.0, 3.0, 25.0], grid=5)
    assert isinstance(res, Evaluation)
    b = res.best(target_system_accuracy=0.85)
    assert b.system_accuracy >= 0.85
    reach = res.table["system_accuracy"] >= 0.85
    assert b.cost_per_input == pytest.approx(res.table["cost_per_input"][reach].min())
    d = res.to_dict()
    json.dumps(d)
    df = res.to_pandas()
    assert len(df) == res.n_rows and "threshold_stage0" in df and "share_stage2" in df
    assert "Pareto front" in repr(res)
    json.dumps(choose_thresholds(res, max_cost_per_input=10.0).to_dict())
    with pytest.raises(ValueError, match="exactly one"):
        choose_thresholds(res)
    with pytest.raises(ValueError, match="non-last stage"):
        evaluate(labels=y, stages=stages, grid=[[0.5]])
    with pytest.raises(ValueError, match="one price per stage"):
        evaluate(labels=y, stages=stages, cost_model=[1.0, 2.0])
    with pytest.warns(ThresholdWarning):
        c = choose_thresholds(res, target_system_accuracy=0.9999)
    assert not c.feasible and c.system_accuracy == res.table["system_accuracy"].max()
    ans, ok = cascade_counts([np.array([0.2])], [np.array([True]), np.array([False])], [np.array([np.inf])])
    assert ans.tolist() == [[0, 1]] and ok.tolist() == [[0, 0]]


def test_threshold_router_two_stage_still_sweeps():
    primary = SpyPredictor(lambda x: binary(S1[x]), classes=["neg", "pos"], name="p")
    fallback = SpyPredictor(lambda x: binary(S3[x]), classes=["neg", "pos"], name="f")
    res = evaluate(ThresholdRouter(primary, fallback), list(range(6)), NAMES, progress=False)
    assert isinstance(res, Evaluation) and res.n_thresholds == 7
