"""Property-based checks of the routing core (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from confroute import Cascade, CostModel, Fallback, Predictions, Predictor


class TablePredictor(Predictor):
    """Looks each input (an int id) up in a fixed probability table; may fail on some ids."""

    def __init__(self, probs, fail_ids=frozenset(), name="t", batch_size=None):
        self.probs = probs
        self.fail_ids = fail_ids
        self.name = name
        self.batch_size = batch_size
        self.seen = []

    def _predict_batch(self, inputs):
        self.seen.extend(int(i) for i in inputs)
        if self.fail_ids & {int(i) for i in inputs}:
            raise RuntimeError("injected failure")
        return Predictions.from_probs(self.probs[np.asarray(inputs, dtype=int)])


@st.composite
def cascades(draw):
    n = draw(st.integers(0, 60))
    k = draw(st.integers(2, 5))
    n_stages = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    tables = [rng.dirichlet(np.full(k, 0.5), size=max(n, 1)) for _ in range(n_stages)]
    thresholds = [draw(st.floats(0.0, 1.0)) for _ in range(n_stages - 1)]
    policies = [draw(st.sampled_from(["keep_primary", "abstain"])) for _ in range(n_stages)]
    fail = [frozenset(rng.choice(max(n, 1), size=draw(st.integers(0, 3)), replace=True).tolist()) for _ in range(n_stages)]
    fail[0] = frozenset()  # a failing first stage is covered in test_fallback
    batch_sizes = [draw(st.one_of(st.none(), st.integers(1, 7))) for _ in range(n_stages)]
    prices = [draw(st.floats(0.0, 10.0)) for _ in range(n_stages)]
    return n, tables, thresholds, policies, fail, batch_sizes, prices


@settings(max_examples=150, deadline=None)
@given(cascades())
def test_every_input_gets_exactly_one_consistent_result(case):
    n, tables, thresholds, policies, fail, batch_sizes, prices = case
    predictors = [
        TablePredictor(t, f, f"s{i}", b) for i, (t, f, b) in enumerate(zip(tables, fail, batch_sizes))
    ]
    stages = [
        Fallback(p, on_error=pol, split_on_failure=True, batch_size=b)
        for p, pol, b in zip(predictors, policies, batch_sizes)
    ]
    cm = CostModel.per_sample(prices)
    result = Cascade(stages, thresholds, cost_model=cm).route(list(range(n)))

    assert len(result) == n
    # Order and reach: stage s saw exactly the inputs that reached it, each once (split retries
    # aside), in input order.
    for s, p in enumerate(predictors):
        reached_ids = np.flatnonzero(result.reached[s]).tolist()
        first_seen = list(dict.fromkeys(p.seen))
        assert first_seen == reached_ids
    for i in range(n):
        path = np.flatnonzero(result.reached[:, i])
        assert path.tolist() == list(range(path.size))  # a prefix of the stages
        last = path[-1]
        s = result.stage[i]
        if i in fail[last] and last > 0:
            assert result.degraded[i]
            expected = last - 1 if policies[last] == "keep_primary" else -1
            assert s == expected
            continue
        assert not result.degraded[i]
        assert s == last
        conf = tables[s][i].max()
        assert result.confidence[i] == conf
        assert result.labels[i] == tables[s][i].argmax()
        # consistent with the threshold: accepted stages are confident, passed ones were not
        if s < len(thresholds):
            assert conf >= thresholds[s]
        for earlier in range(s):
            assert tables[earlier][i].max() < thresholds[earlier]
    # Costs add up: each input pays every stage it reached.
    expected_cost = np.array(prices) @ result.reached
    np.testing.assert_allclose(result.cost, expected_cost)
    np.testing.assert_allclose(result.total_cost, expected_cost.sum())
