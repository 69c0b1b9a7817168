"""CostModel: the study's example and cascade accounting."""

from __future__ import annotations

import numpy as np
import pytest

from confroute import CostModel, StageCost


def test_study_example_25k_vs_50k():
    cm = CostModel.per_sample([0.001, 0.005])
    s = cm.savings(coverage=0.70, n=10_000_000)
    assert s.cost == pytest.approx(25_000.0)
    assert s.baseline == pytest.approx(50_000.0)
    assert s.saved == pytest.approx(25_000.0)
    assert s.fraction == pytest.approx(0.5)
    # The study's figure ignored the primary's cost on deferred inputs and was off by ten:
    assert s.cost != pytest.approx(220_000.0)


def test_hourly_prices_match_study_form():
    cm = CostModel.hourly([(0.50, 100), (1.50, 10)])
    np.testing.assert_allclose(cm.stage_costs, [0.5 / 360_000, 1.5 / 36_000])
    # at 70% coverage: 1.389e-6 + 0.3 * 4.167e-5 against 4.167e-5
    assert cm.savings(coverage=0.7).fraction == pytest.approx(1 - (0.5 / 360_000 + 0.3 * 1.5 / 36_000) / (1.5 / 36_000))


def test_expected_cost_three_stages():
    cm = CostModel.per_sample([1, 10, 100])
    # stage 1 answers 50%, stage 2 answers 30%, stage 3 the remaining 20%
    np.testing.assert_allclose(cm.reach_fractions([0.5, 0.3]), [1.0, 0.5, 0.2])
    assert cm.expected_cost([0.5, 0.3], n=10) == pytest.approx(10 * (1 + 5 + 20))
    assert cm.baseline(10) == 1000


def test_routing_more_than_baseline_gives_negative_savings():
    cm = CostModel.per_sample([0.004, 0.005])
    assert cm.savings(coverage=0.1).fraction < 0


def test_cost_of_result_and_time():
    class R:
        reached = np.array([[1, 1, 1, 1], [0, 1, 0, 1]], dtype=bool)

        def __len__(self):
            return 4

    cm = CostModel([StageCost.hourly(3.6, 1000), StageCost.hourly(36.0, 100)])
    assert cm.cost(R()) == pytest.approx(4 * 1e-6 + 2 * 1e-4)
    assert cm.time(R()) == pytest.approx(4 / 1000 + 2 / 100)
    assert CostModel.per_sample([1, 2]).savings(R()).cost == 8.0


@pytest.mark.parametrize(
    "make, msg",
    [
        (lambda: StageCost(-1.0), "price must be"),
        (lambda: StageCost.hourly(1.0, 0), "throughput must be > 0"),
        (lambda: CostModel.per_sample([1, 2]).expected_cost([0.5, 0.5]), "give 1 answered"),
        (lambda: CostModel.per_sample([1, 2]).expected_cost(1.2), "sum to <= 1"),
        (lambda: CostModel.per_sample([1, 2]).time(None), "needs seconds_per_sample"),
    ],
)
def test_bad_cost_inputs(make, msg):
    with pytest.raises(ValueError, match=msg):
        make()


def test_input_prices_price_each_input_through_per_input():
    cm = CostModel.from_input_prices([1.0, [10.0, 20.0, 30.0]], 3)
    reached = np.array([[1, 1, 1], [0, 1, 1]], dtype=bool)
    assert cm.per_input(reached).tolist() == [1.0, 21.0, 31.0]
    assert cm.answered_by(3).tolist() == [[1.0, 1.0, 1.0], [11.0, 21.0, 31.0]]
    assert cm.baseline(3) == 60.0 and cm.stage_costs.tolist() == [1.0, 20.0]
    with pytest.raises(ValueError, match="prices 3 inputs"):
        cm.per_input(np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        CostModel.from_input_prices([1.0, [1.0, 2.0]], 3)
    with pytest.raises(ValueError, match="finite and >= 0"):
        CostModel.from_input_prices([1.0, [1.0, -2.0, 3.0]], 3)
    # One price per stage: the same figures as before, now all read from per_input.
    flat = CostModel.per_sample([1.0, 10.0, 100.0])
    assert flat.answer_costs().tolist() == [1.0, 11.0, 111.0]
    assert flat.answered_by(2).tolist() == [[1.0, 1.0], [11.0, 11.0], [111.0, 111.0]]


def test_evaluation_with_input_prices_is_exact():
    from confroute import evaluate

    scores = np.array([0.9, 0.1, 0.5])
    prices = CostModel.from_input_prices([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]], 3)
    res = evaluate(labels=[0, 0, 0], primary=[0, 1, 0], scores=scores, fallback=[0, 0, 0], cost_model=prices)
    # Rows accept {}, {0.9}, {0.9, 0.5}, all: 6 + the fallback price of the deferred.
    assert res.table["cost"].tolist() == [66.0, 56.0, 26.0, 6.0]
    assert res.at(0.5).cost == 26.0 and res.at(0.5).savings == pytest.approx(1 - 26 / 60)
    on_grid = evaluate(labels=[0, 0, 0], primary=[0, 1, 0], scores=scores, fallback=[0, 0, 0],
                       cost_model=prices, grid=[[np.inf, 0.9, 0.5, 0.1]])
    assert on_grid.table["cost"].tolist() == [66.0, 56.0, 26.0, 6.0]


def test_cascade_grid_with_input_prices_matches_brute_force():
    from confroute import evaluate

    rng = np.random.default_rng(7)
    n = 30
    scores = [rng.choice([0.2, 0.5, 0.8], n), rng.choice([0.3, 0.6, 0.9], n)]
    prices = [rng.uniform(0, 1, n), rng.uniform(1, 3, n), 10.0]
    cm = CostModel.from_input_prices(prices, n)
    res = evaluate(labels=np.zeros(n, int), stages=[np.zeros(n, int)] * 3, scores=scores, cost_model=cm,
                   grid=[[np.inf, 0.8, 0.5, 0.2], [np.inf, 0.6, 0.3]])
    matrix = np.stack([np.broadcast_to(np.asarray(p, float), (n,)) for p in prices])
    for r, (t1, t2) in enumerate(res.table["thresholds"]):
        stage = np.where(scores[0] >= t1, 0, np.where(scores[1] >= t2, 1, 2))
        brute = sum(matrix[: stage[i] + 1, i].sum() for i in range(n))
        assert res.table["cost"][r] == pytest.approx(brute)
        assert res.at([t1, t2]).cost == pytest.approx(brute)
