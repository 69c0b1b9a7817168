"""Reliability round 2 (issue 12): inputs refused up front, with a message that names the fix."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from _helpers import binary

from confroute import (
    CostModel,
    Predictions,
    ThresholdRouter,
    choose_thresholds,
    evaluate,
)


def unsure(xs):
    return np.tile(binary(0.6), (len(xs), 1))


# -- bug 7: a bare string is not a stream of inputs -----------------------------------------------


@pytest.mark.parametrize("text", ["one review", b"one review"])
def test_route_stream_refuses_a_bare_string(text):
    router = ThresholdRouter(unsure, unsure, 0.8)
    with pytest.raises(TypeError, match="not a single string; wrap it"):
        next(router.route_stream(text))

    async def first():
        async for chunk in router.aroute_stream(text):
            return chunk

    with pytest.raises(TypeError, match="not a single string; wrap it"):
        asyncio.run(first())


def test_route_stream_still_takes_iterables_of_strings():
    router = ThresholdRouter(unsure, unsure, 0.8)
    chunks = list(router.route_stream(iter(["a", "b", "c"]), chunk_size=2))
    assert [len(c) for c in chunks] == [2, 1]


# -- bug 8: NaN cost or savings targets are errors ------------------------------------------------


def _evaluation():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    primary = Predictions.from_probs(rng.dirichlet([1, 1], 200))
    fallback = Predictions.from_probs(rng.dirichlet([1, 1], 200))
    return evaluate(labels=labels, primary=primary, fallback=fallback, cost_model=CostModel.per_sample([1, 5]))


@pytest.mark.parametrize("objective", ["max_cost_per_input", "min_savings", "target_coverage", "target_accuracy"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_targets_are_errors_not_warnings(objective, value):
    with pytest.raises(ValueError, match=f"{objective} must be a finite number"):
        choose_thresholds(_evaluation(), **{objective: value})


def test_non_finite_cascade_cost_budget_is_an_error():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 100)
    stages = [Predictions.from_probs(rng.dirichlet([1, 1], 100)) for _ in range(3)]
    res = evaluate(labels=labels, stages=stages, cost_model=[1.0, 2.0, 10.0], grid=5)
    with pytest.raises(ValueError, match="max_cost_per_input must be a finite number"):
        choose_thresholds(res, max_cost_per_input=float("nan"))


# -- bug 9: CostModel.per_sample names every stage or says what is wrong -------------------------


def test_per_sample_names_must_match_prices():
    with pytest.raises(ValueError, match="2 prices but 1 name"):
        CostModel.per_sample([0.001, 0.005], names=["cheap"])
    with pytest.raises(ValueError, match="2 prices but 3 names"):
        CostModel.per_sample([0.001, 0.005], names=["a", "b", "c"])
    cm = CostModel.per_sample([0.001, 0.005], names=["cheap", "dense"])
    assert [s.name for s in cm.stages] == ["cheap", "dense"] and cm.n_stages == 2


@pytest.mark.parametrize("prices", [0.001, "0.001", None])
def test_per_sample_needs_one_price_per_stage(prices):
    with pytest.raises(TypeError, match=r"one price per stage.*CostModel.per_sample\(\[0.001, 0.005\]\)"):
        CostModel.per_sample(prices)


@pytest.mark.parametrize("prices, match", [([], "at least one stage"), ([0.001, "cheap"], "stage 1"),
                                           ([0.001, float("nan")], "finite number >= 0")])
def test_per_sample_bad_prices(prices, match):
    with pytest.raises((TypeError, ValueError), match=match):
        CostModel.per_sample(prices)


def test_hourly_names_must_match_and_stages_are_pairs():
    with pytest.raises(ValueError, match="2 stages but 1 name"):
        CostModel.hourly([(0.5, 100), (1.5, 10)], names=["cpu"])
    with pytest.raises(TypeError, match=r"\(price_per_hour, inputs_per_second\)"):
        CostModel.hourly([0.5, 1.5])


def test_constructor_checks_every_stage():
    with pytest.raises(ValueError, match="finite number >= 0"):
        CostModel([0.001, -1])
    with pytest.raises(TypeError, match="one StageCost or price per stage"):
        CostModel(0.001)
