"""Fault injection: failing, hanging, miscounting and poisoned fallbacks under every policy."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from _helpers import SpyPredictor, binary

from confroute import (
    CallablePredictor,
    CircuitBreaker,
    CircuitOpenError,
    Fallback,
    PredictionError,
    StageTimeoutError,
    ThresholdRouter,
)

CLASSES = ["neg", "pos"]
N = 60


def primary():
    # inputs 0..N-1; even inputs are confident (0.95), odd ones are not (0.6): 30 deferred
    return SpyPredictor(lambda i: binary(0.95 if i % 2 == 0 else 0.6), CLASSES, "primary")


def good_rows(xs):
    return np.array([binary(0.05) for _ in xs])  # fallback says "neg"


class Flaky:
    """Fails a call with probability ``rate`` (seeded)."""

    def __init__(self, rate, seed=0):
        self.rng = np.random.default_rng(seed)
        self.rate = rate
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, xs):
        with self.lock:
            self.calls += 1
            fail = self.rng.uniform() < self.rate
        if fail:
            raise ConnectionError("transient")
        return good_rows(xs)


def poisoned(xs):
    if 7 in list(xs):
        raise ValueError("cannot parse input 7")
    return good_rows(xs)


def check_invariants(result, n=N):
    assert len(result) == n
    odd = np.arange(n) % 2 == 1
    assert (result.stage[~odd] == 0).all()  # confident inputs never touch the fallback
    assert result.reached[1].tolist() == odd.tolist()
    # a deferred input is answered by the fallback unless the fallback failed on it
    assert ((result.stage[odd] == 1) | result.degraded[odd]).all()


@pytest.mark.parametrize("policy", ["raise", "keep_previous", "abstain"])
def test_flaky_fallback_30_percent(policy):
    fb = Fallback(Flaky(0.3, seed=1), on_error=policy, batch_size=3, retries=0, name="flaky")
    router = ThresholdRouter(primary(), fb, threshold=0.8)
    if policy == "raise":
        with pytest.raises(ConnectionError, match="transient"):
            router.route(list(range(N)))
        return
    result = router.route(list(range(N)))
    check_invariants(result)
    odd = np.flatnonzero(np.arange(N) % 2 == 1)
    failed = odd[result.degraded[odd]]
    assert 0 < failed.size < odd.size  # some calls failed, some did not
    assert all(result.errors[i] == "ConnectionError: transient" for i in failed)
    assert all(result.errors[i] is None for i in np.setdiff1d(np.arange(N), failed))
    ok = np.setdiff1d(odd, failed)
    assert (result.stage[ok] == 1).all() and (result.label_index[ok] == 0).all()
    if policy == "keep_previous":
        assert (result.stage[failed] == 0).all() and (result.label_index[failed] == 1).all()
        np.testing.assert_allclose(result.confidence[failed], 0.6)
    else:
        assert (result.stage[failed] == -1).all() and (result.label_index[failed] == -1).all()
        assert np.isnan(result.confidence[failed]).all()
        assert result.labels[failed].tolist() == [None] * failed.size
    # every deferred input still paid for the fallback attempt
    assert result.reached[1, failed].all()


def test_retries_recover_transient_failures():
    flaky = Flaky(0.3, seed=1)
    fb = Fallback(flaky, on_error="raise", batch_size=3, retries=8, backoff=0.0, jitter=False)
    result = ThresholdRouter(primary(), fb, threshold=0.8).route(list(range(N)))
    assert not result.degraded.any()
    assert (result.stage[1::2] == 1).all()
    assert flaky.calls > 10  # 10 batches of 3, some retried


def test_backoff_waits_grow_and_are_capped():
    fb = Fallback(lambda xs: None, retries=5, backoff=0.1, max_backoff=0.3, jitter=False)
    assert [fb._wait(a) for a in range(1, 6)] == [0.1, 0.2, 0.3, 0.3, 0.3]
    jittered = Fallback(lambda xs: None, backoff=1.0)
    waits = [jittered._wait(1) for _ in range(200)]
    assert 0.5 <= min(waits) < 0.7 and 1.3 < max(waits) < 1.5


@pytest.mark.parametrize("policy", ["keep_previous", "abstain"])
def test_hanging_fallback_times_out(policy):
    release = threading.Event()

    def hangs(xs):
        release.wait(5)
        return good_rows(xs)

    fb = Fallback(hangs, on_error=policy, timeout=0.05)
    t0 = time.perf_counter()
    result = ThresholdRouter(primary(), fb, threshold=0.8).route(list(range(6)))
    assert time.perf_counter() - t0 < 2
    release.set()
    assert result.degraded.tolist() == [False, True] * 3
    assert "StageTimeoutError" in result.errors[1] and "within 0.05 s" in result.errors[1]


def test_hanging_fallback_raises_timeout_under_raise():
    release = threading.Event()
    fb = Fallback(lambda xs: release.wait(5), timeout=0.05)
    with pytest.raises(StageTimeoutError):
        ThresholdRouter(primary(), fb, threshold=0.8).route([1])
    release.set()


@pytest.mark.parametrize("policy", ["raise", "keep_previous", "abstain"])
def test_wrong_number_of_results(policy):
    fb = Fallback(lambda xs: good_rows(xs)[:-1], on_error=policy)
    router = ThresholdRouter(primary(), fb, threshold=0.8)
    if policy == "raise":
        with pytest.raises(PredictionError, match="returned 2 predictions for 3 inputs"):
            router.route(list(range(6)))
        return
    result = router.route(list(range(6)))
    assert result.degraded.tolist() == [False, True] * 3
    assert "returned 2 predictions for 3 inputs" in result.errors[1]


def test_poisoned_input_isolated_by_split_on_failure():
    fb = Fallback(poisoned, on_error="abstain", split_on_failure=True)
    result = ThresholdRouter(primary(), fb, threshold=0.8).route(list(range(N)))
    assert result.degraded.tolist() == [i == 7 for i in range(N)]
    assert result.errors[7] == "ValueError: cannot parse input 7"
    assert result.label_index[7] == -1 and (result.stage[1::2][np.arange(30) != 3] == 1).all()


def test_poisoned_input_without_split_takes_the_batch_down():
    fb = Fallback(poisoned, on_error="keep_previous")
    result = ThresholdRouter(primary(), fb, threshold=0.8).route(list(range(N)))
    assert result.degraded[1::2].all() and not result.degraded[::2].any()
    assert (result.stage == 0).all()


def test_non_retryable_errors_fail_at_once():
    calls = []

    def fails(xs):
        calls.append(1)
        raise KeyError("bad request")

    fb = Fallback(fails, on_error="abstain", retries=5, backoff=0, retry_on=(ConnectionError,))
    ThresholdRouter(primary(), fb, threshold=0.8).route([1])
    assert len(calls) == 1


def test_circuit_breaker_stops_calling_then_resumes():
    now = [0.0]
    calls = []
    healthy = [False]

    def api(xs):
        calls.append(list(xs))
        if not healthy[0]:
            raise ConnectionError("down")
        return good_rows(xs)

    cb = CircuitBreaker(failure_threshold=2, reset_after=30, clock=lambda: now[0])
    fb = Fallback(api, on_error="keep_previous", batch_size=1, circuit_breaker=cb)
    router = ThresholdRouter(primary(), fb, threshold=0.8)
    result = router.route(list(range(10)))  # 5 deferred inputs, one call each
    assert len(calls) == 2 and cb.state == "open"  # stopped after two failures
    assert result.degraded.sum() == 5
    assert "circuit breaker open" in result.errors[9]
    healthy[0] = True
    now[0] = 31.0
    result = router.route(list(range(10)))
    assert not result.degraded.any() and cb.state == "closed"
    assert len(calls) == 2 + 5


def test_circuit_breaker_half_open_failure_reopens():
    now = [0.0]
    cb = CircuitBreaker(failure_threshold=1, reset_after=5, clock=lambda: now[0])
    cb.record(False)
    now[0] = 6
    assert cb.allow() and not cb.allow()  # one trial only
    cb.record(False)
    assert cb.state == "open" and not cb.allow()


def test_bad_fallback_parameters():
    with pytest.raises(ValueError, match="on_error must be one of"):
        Fallback(good_rows, on_error="ignore")
    with pytest.raises(ValueError, match="timeout must be a finite number > 0"):
        Fallback(good_rows, timeout=0)
    with pytest.raises(ValueError, match="retries must be an integer >= 0"):
        Fallback(good_rows, retries=-1)


def test_keep_previous_on_first_stage_abstains():
    # The first stage has no earlier answer to keep: its failed inputs are abstained on.
    fb = Fallback(lambda xs: (_ for _ in ()).throw(OSError("disk")), on_error="keep_previous")
    result = ThresholdRouter(fb, good_rows, threshold=0.8).route([1, 2])
    assert result.label_index.tolist() == [-1, -1] and result.degraded.all()
    assert not result.reached[1].any()


# -- async ---------------------------------------------------------------------------------------


def test_aroute_matches_route_with_sync_and_async_stages():
    async def async_fallback(xs):
        await asyncio.sleep(0)
        return good_rows(xs)

    sync_router = ThresholdRouter(primary(), good_rows, threshold=0.8)
    async_router = ThresholdRouter(primary(), CallablePredictor(async_fallback), threshold=0.8)
    expected = sync_router.route(list(range(N)))
    got = asyncio.run(async_router.aroute(list(range(N))))
    np.testing.assert_array_equal(got.label_index, expected.label_index)
    np.testing.assert_array_equal(got.stage, expected.stage)


def test_async_concurrency_limit_is_respected():
    active, peak = [0], [0]

    async def api(xs):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        await asyncio.sleep(0.01)
        active[0] -= 1
        return good_rows(xs)

    fb = Fallback(CallablePredictor(api), batch_size=1, max_concurrency=3)
    result = asyncio.run(ThresholdRouter(primary(), fb, threshold=0.8).aroute(list(range(20))))
    assert peak[0] == 3
    assert (result.stage[1::2] == 1).all()


def test_async_timeout_and_policy():
    async def hangs(xs):
        await asyncio.sleep(5)

    fb = Fallback(CallablePredictor(hangs), on_error="keep_previous", timeout=0.05)
    result = asyncio.run(ThresholdRouter(primary(), fb, threshold=0.8).aroute(list(range(4))))
    assert result.degraded.tolist() == [False, True, False, True]
    assert "StageTimeoutError" in result.errors[1]


def test_async_function_through_sync_route_explains():
    async def api(xs):
        return good_rows(xs)

    with pytest.raises(TypeError, match="use `await router.aroute"):
        ThresholdRouter(primary(), CallablePredictor(api), threshold=0.8).route([1])


# -- threads and streaming ---------------------------------------------------------------------


def test_many_threads_share_one_router():
    from concurrent.futures import ThreadPoolExecutor

    router = ThresholdRouter(primary(), Fallback(good_rows, max_concurrency=2, batch_size=4), threshold=0.8)
    batches = [list(range(k, k + 37)) for k in range(0, 400, 7)]
    serial = [router.route(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(router.route, batches))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.label_index, b.label_index)
        np.testing.assert_array_equal(a.stage, b.stage)
        np.testing.assert_array_equal(a.reached, b.reached)


def test_route_stream_in_order_with_bounded_chunks():
    router = ThresholdRouter(primary(), good_rows, threshold=0.8)
    seen = []
    chunks = list(router.route_stream(iter(range(1005)), chunk_size=100))
    assert [len(c) for c in chunks] == [100] * 10 + [5]
    for c in chunks:
        seen.extend(c.stage.tolist())
    assert seen == [0 if i % 2 == 0 else 1 for i in range(1005)]


def test_aroute_stream_accepts_async_iterables():
    async def gen():
        for i in range(25):
            yield i

    async def collect():
        router = ThresholdRouter(primary(), good_rows, threshold=0.8)
        return [r async for r in router.aroute_stream(gen(), chunk_size=10)]

    chunks = asyncio.run(collect())
    assert [len(c) for c in chunks] == [10, 10, 5]


def test_sync_fallback_thread_pool_concurrency():
    lock, active, peak = threading.Lock(), [0], [0]

    def api(xs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return good_rows(xs)

    fb = Fallback(api, batch_size=1, max_concurrency=4)
    result = ThresholdRouter(primary(), fb, threshold=0.8).route(list(range(16)))
    assert 2 <= peak[0] <= 4
    assert (result.stage[1::2] == 1).all()


def test_keep_primary_is_a_deprecated_alias_of_keep_previous():
    import warnings

    with pytest.deprecated_call(match='on_error="keep_previous"'):
        fb = Fallback(lambda xs: np.tile([0.5, 0.5], (len(xs), 1)), on_error="keep_primary")
    assert fb.on_error == "keep_previous"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Fallback(lambda xs: np.tile([0.5, 0.5], (len(xs), 1)), on_error="keep_primary")
    assert caught[0].category is DeprecationWarning and caught[0].filename == __file__
    # The old word routes exactly like the new one.
    primary = CallablePredictor(lambda xs: np.array([[1 - x, x] for x in xs]), classes=["a", "b"])

    def broken(xs):
        raise RuntimeError("down")

    with pytest.deprecated_call():
        old = ThresholdRouter(primary, Fallback(broken, on_error="keep_primary"), threshold=0.9)
    new = ThresholdRouter(primary, Fallback(broken, on_error="keep_previous"), threshold=0.9)
    a, b = old.route([0.95, 0.5]), new.route([0.95, 0.5])
    assert a.stage.tolist() == b.stage.tolist() == [0, 0] and a.degraded.tolist() == [False, True]
