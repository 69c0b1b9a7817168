"""Token-priced stages: CostModel([price, TokenPrice(...)]) through routing, evaluate() and choose_thresholds().

The LLM here is a tiny predictor that records the token usage of every input it answers (as
OpenAIPredictor does): its prompt is one token per character, its answer one token. The same
path against the real llama.cpp server is in tests/test_llm_server.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from confroute import CostModel, Predictions, ThresholdRouter, choose_thresholds, evaluate
from confroute.core.cost import TokenPrice
from confroute.predictors.base import Predictor

PRICE = TokenPrice(input_per_million=0.15, output_per_million=0.60)
CHEAP = 1e-5


class Words(Predictor):
    """Positive when the text says "good"; confidence from the text length (varied on purpose)."""

    classes = ["neg", "pos"]

    def _predict_batch(self, inputs):
        p = np.array([0.55 + 0.4 * (len(t) % 7) / 6 for t in inputs])
        pos = np.array(["good" in t for t in inputs])
        probs = np.where(pos[:, None], np.c_[1 - p, p], np.c_[p, 1 - p])
        return Predictions.from_probs(probs, self.classes)


class TokenLLM(Predictor):
    """Always right; records usage per input: len(text) prompt tokens, 1 completion token."""

    classes = ["neg", "pos"]

    def __init__(self):
        self.calls: dict[str, tuple[int, int]] = {}
        self.n_requests = 0

    def _predict_batch(self, inputs):
        self.n_requests += len(inputs)
        for t in inputs:
            self.calls[t] = (len(t), 1)
        pos = np.array(["good" in t for t in inputs], dtype=float)
        return Predictions.from_probs(np.c_[1 - pos, pos] * 0.98 + 0.01, self.classes)

    def usage(self, inputs):
        got = [self.calls.get(t, (np.nan, np.nan)) for t in inputs]
        return {"prompt_tokens": np.array([g[0] for g in got], float),
                "completion_tokens": np.array([g[1] for g in got], float)}


def by_hand(text: str) -> float:
    return len(text) * 0.15 / 1e6 + 1 * 0.60 / 1e6


TEXTS = ["good film", "bad", "a good long and winding review", "dull and bad, bad, bad", "good!"]
LABELS = ["pos", "neg", "pos", "neg", "pos"]


def router() -> ThresholdRouter:
    return ThresholdRouter(Words(), TokenLLM(), threshold=0.8, cost_model=CostModel([CHEAP, PRICE]))


def test_routing_prices_each_input_by_the_tokens_it_used():
    r = router()
    res = r.route(TEXTS)
    assert res.cost is not None
    for text, stage, cost in zip(TEXTS, res.stage, res.cost):
        expected = CHEAP + (by_hand(text) if stage == 1 else 0.0)
        assert cost == pytest.approx(expected, rel=1e-12, abs=0)
    assert (res.stage == 1).any() and (res.stage == 0).any()
    assert r.cost_model.cost(res) == pytest.approx(res.cost.sum(), rel=1e-12)
    with pytest.raises(ValueError, match="priced by tokens"):  # the baseline needs every input's usage
        r.cost_model.savings(res)


def test_evaluate_with_token_prices_is_usage_times_price_by_hand_on_5_inputs():
    r = router()
    ev = evaluate(r, TEXTS, LABELS)
    scores = ev.stage_scores[0]
    for row, (t,) in enumerate(ev.table["thresholds"]):
        deferred = [text for text, s in zip(TEXTS, scores) if not s >= t]
        expected = len(TEXTS) * CHEAP + sum(by_hand(text) for text in deferred)
        assert ev.table["cost"][row] == pytest.approx(expected, rel=1e-12, abs=0)
        assert ev.at(t).cost == pytest.approx(expected, rel=1e-12, abs=0)
    baseline = sum(by_hand(text) for text in TEXTS)
    assert ev.cost_model.baseline(len(TEXTS)) == pytest.approx(baseline, rel=1e-12)
    point = ev.at(0.8)
    assert point.savings == pytest.approx(1 - point.cost / baseline, rel=1e-12)
    # the single models on the Pareto comparison: the LLM alone at its mean real price
    assert ev.stage_costs[1] == pytest.approx(baseline / len(TEXTS), rel=1e-12)
    cmp = ev.compare_to_alternatives()
    assert "primary alone" in str(cmp) and len(ev.pareto()) >= 1


def test_choose_thresholds_budget_uses_each_inputs_real_price():
    r = router()
    ev = evaluate(r, TEXTS, LABELS)
    costs = ev.table["cost_per_input"]
    budget = float(np.sort(costs)[len(costs) // 2])
    choice = choose_thresholds(ev, max_cost_per_input=budget, delta=None)
    assert choice.cost_per_input <= budget + 1e-18
    row = int(np.flatnonzero(ev.table["thresholds"][:, 0] == choice.threshold)[0])
    assert choice.cost_per_input == pytest.approx(costs[row], rel=1e-12)  # exact, not mean prices x coverage
    # the strictest threshold within budget
    assert all(c > budget for c in costs[:row])
    certified = choose_thresholds(ev, max_cost_per_input=float(costs.max()) * 10, delta=0.1)
    assert certified.feasible and certified.procedure == "hoeffding_cost"


def test_unbound_token_prices_and_predictors_without_usage_are_refused():
    cm = CostModel([CHEAP, PRICE])
    with pytest.raises(ValueError, match="priced by tokens.*usage"):
        cm.baseline(10)
    with pytest.raises(ValueError, match="records no token usage"):
        ThresholdRouter(Words(), Words(), cost_model=cm)
    with pytest.raises(ValueError, match="no recorded call"):
        cm.with_usage([None, TokenLLM().usage(["never asked"])])
    with pytest.raises(ValueError, match="TokenPrice"):
        ThresholdRouter(Words(), TokenLLM(), cost_model=CostModel.from_input_prices([1.0, [1.0, 2.0]], 2))
    assert np.isnan(cm.stage_costs[1]) and "TokenPrice" in repr(cm)
