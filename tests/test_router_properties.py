"""Property-based checks of the routing core (hypothesis)."""

from __future__ import annotations

import time

import numpy as np
import pytest
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
    policies = [draw(st.sampled_from(["keep_previous", "abstain"])) for _ in range(n_stages)]
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
            expected = last - 1 if policies[last] == "keep_previous" else -1
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


# -- async, cancellation and the circuit breaker (issue 12) ------------------------------------------

import asyncio  # noqa: E402
import threading  # noqa: E402

from hypothesis import HealthCheck  # noqa: E402

from confroute import CallablePredictor, CircuitBreaker, CircuitOpenError  # noqa: E402


def _async_twin(table_predictor):
    """The same table behind an ``async def`` (a natively async stage)."""

    async def fn(xs):
        await asyncio.sleep(0)
        return table_predictor._predict_batch(xs)

    return CallablePredictor(fn, name=table_predictor.name)


def _run_loop(coro_fn, limit=30.0):
    box = {}

    def target():
        try:
            box["value"] = asyncio.run(coro_fn())
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), "the event loop did not finish"
    if "error" in box:
        raise box["error"]
    return box["value"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cascades(), st.lists(st.booleans(), min_size=4, max_size=4), st.lists(st.integers(1, 4), min_size=4, max_size=4),
       st.integers(1, 8))
def test_aroute_matches_route_under_concurrency(case, natively_async, concurrency, n_callers):
    """Sync and async stages, any concurrency, many concurrent callers: aroute gives exactly
    what route gives, input by input."""
    n, tables, thresholds, policies, fail, batch_sizes, prices = case

    def build(use_async):
        predictors = [TablePredictor(t, f, f"s{i}", None) for i, (t, f) in enumerate(zip(tables, fail))]
        stages = [
            Fallback(_async_twin(p) if use_async and a else p, on_error=pol, split_on_failure=True,
                     batch_size=b, max_concurrency=c)
            for p, pol, b, a, c in zip(predictors, policies, batch_sizes, natively_async, concurrency)
        ]
        return Cascade(stages, thresholds, cost_model=CostModel.per_sample(prices))

    expected = build(False).route(list(range(n)))
    router = build(True)

    async def many():
        return await asyncio.gather(*(router.aroute(list(range(n))) for _ in range(n_callers)))

    for got in _run_loop(many):
        assert len(got) == n
        for field in ("labels", "stage", "reached", "degraded", "cost"):
            np.testing.assert_array_equal(getattr(got, field), getattr(expected, field))
        assert got.errors.tolist() == expected.errors.tolist()
        np.testing.assert_array_equal(got.confidence, expected.confidence)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 30),
    batch_size=st.one_of(st.none(), st.integers(1, 6)),
    concurrency=st.integers(1, 4),
    hang_ids=st.frozensets(st.integers(0, 29), max_size=5),
    sync_stage=st.booleans(),
    cancel_after=st.floats(0.0, 0.05),
    policy=st.sampled_from(["raise", "keep_previous", "abstain"]),
)
def test_cancelled_callers_leave_no_tasks_slots_or_stuck_breaker(
    n, batch_size, concurrency, hang_ids, sync_stage, cancel_after, policy
):
    """A caller cancelled at any moment (its wait_for deadline) leaves nothing behind: no task
    still running, every concurrency slot returned once the abandoned calls end, a breaker that
    is not stuck half-open; and the next call through the same router is complete and correct."""
    release = threading.Event()
    probs = np.tile([0.3, 0.7], (n, 1))

    def sync_fallback(xs):
        if hang_ids & set(xs):
            release.wait(5)
        return np.tile([0.9, 0.1], (len(xs), 1))

    async def async_fallback(xs):
        if hang_ids & set(xs):
            await asyncio.sleep(5)
        return np.tile([0.9, 0.1], (len(xs), 1))

    now = [100.0]
    breaker = CircuitBreaker(failure_threshold=1, reset_after=0, clock=lambda: now[0])
    breaker.record(False)  # open, with the trial due: the first call of the fallback is the trial
    fb = Fallback(CallablePredictor(sync_fallback if sync_stage else async_fallback), on_error=policy,
                  batch_size=batch_size, max_concurrency=concurrency, circuit_breaker=breaker)
    router = Cascade([lambda xs: probs[np.asarray(xs, dtype=int)], fb], [0.9])

    async def scenario():
        try:
            await asyncio.wait_for(router.aroute(list(range(n))), cancel_after)
        except asyncio.TimeoutError:
            pass
        except CircuitOpenError:
            # Under "raise": a batch that finds the single half-open trial taken is refused.
            assert policy == "raise"
        await asyncio.sleep(0)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return leftover

    try:
        leftover = _run_loop(scenario)
        assert leftover == []
        assert breaker.state in ("closed", "open")  # never left half-open
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while fb._slots.in_use and time.monotonic() < deadline:
        time.sleep(0.005)
    assert fb._slots.in_use == 0
    # The breaker still lets a call through: a healthy stage sharing it answers every input.
    healthy = Fallback(CallablePredictor(lambda xs: np.tile([0.9, 0.1], (len(xs), 1))), circuit_breaker=breaker)
    result = _run_loop(lambda: Cascade([lambda xs: probs[np.asarray(xs, dtype=int)], healthy], [0.9])
                       .aroute(list(range(n))))
    assert len(result) == n and (result.stage == 1).all() and breaker.state == "closed"


class _BreakerModel:
    """The breaker as specified: closed -> open after ``k`` consecutive failures; after
    ``reset`` seconds one trial; trial success closes, failure reopens, no verdict re-arms it."""

    def __init__(self, k, reset):
        self.k, self.reset = k, reset
        self.failures, self.opened_at = 0, None

    def admits(self, now):
        return self.opened_at is None or now - self.opened_at >= self.reset

    def outcome(self, now, verdict):
        trial = self.opened_at is not None
        if verdict is None:
            return
        if verdict:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if trial or self.failures >= self.k:
            self.opened_at = now

    @property
    def state(self):
        return "closed" if self.opened_at is None else "open"


@settings(max_examples=150, deadline=None)
@given(
    k=st.integers(1, 4),
    reset=st.sampled_from([0.0, 5.0, 30.0]),
    ops=st.lists(st.tuples(st.sampled_from(["ok", "fail", "interrupt", "fatal"]), st.sampled_from([0.0, 1.0, 10.0])),
                 max_size=40),
)
def test_breaker_through_a_stage_follows_its_specification(k, reset, ops):
    """Every call through a Fallback (success, failure, KeyboardInterrupt, non-retryable error)
    moves the breaker exactly as the specification says; it is never left half-open."""
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=k, reset_after=reset, clock=lambda: now[0])
    model = _BreakerModel(k, reset)
    calls = []
    script = {}

    def api(xs):
        calls.append(xs[0])
        kind = script[xs[0]]
        if kind == "fail":
            raise ConnectionError("down")
        if kind == "fatal":
            raise ValueError("bad request")
        if kind == "interrupt":
            raise KeyboardInterrupt
        return np.tile([0.5, 0.5], (len(xs), 1))

    fb = Fallback(api, on_error="abstain", circuit_breaker=breaker)
    for i, (kind, advance) in enumerate(ops):
        now[0] += advance
        script[i] = kind
        admitted = model.admits(now[0])
        if kind == "interrupt" and admitted:
            with pytest.raises(KeyboardInterrupt):
                fb.call([i])
            model.outcome(now[0], None)
        else:
            out = fb.call([i])
            assert out.ok.tolist() == [admitted and kind == "ok"]
            if not admitted:
                assert out.errors[0].startswith("CircuitOpenError")
            if admitted:
                model.outcome(now[0], kind == "ok")
        assert (calls[-1:] == [i]) == admitted
        assert breaker.state == model.state
