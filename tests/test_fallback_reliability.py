"""Reliability round 2 (issue 12): each test reproduces one of the bugs the fault probes found.

Every wait here is bounded: event loops run in daemon threads joined with a timeout, hanging
callables wait on an event the test sets at the end, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _helpers import binary

from confroute import (
    CallablePredictor,
    CircuitBreaker,
    CircuitOpenError,
    Fallback,
    StageTimeoutError,
    ThresholdRouter,
)

CLASSES = ["neg", "pos"]


def unsure(xs):
    return np.tile(binary(0.6), (len(xs), 1))  # below every threshold used here: always deferred


def good_rows(xs):
    return np.tile(binary(0.05), (len(xs), 1))


def run_bounded(coro_fn, limit=20.0):
    """``asyncio.run(coro_fn())`` in a daemon thread; fail (not hang) if it does not return."""
    box: dict = {}

    def target():
        try:
            box["value"] = asyncio.run(coro_fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"asyncio.run() did not return within {limit} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


class InFlight:
    """A callable fallback that counts how many calls run at once (sync or async flavour)."""

    def __init__(self, seconds=0.01):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.calls = 0

    def _enter(self):
        with self.lock:
            self.active += 1
            self.calls += 1
            self.peak = max(self.peak, self.active)

    def _leave(self):
        with self.lock:
            self.active -= 1

    def sync(self, xs):
        self._enter()
        try:
            time.sleep(self.seconds)
            return good_rows(xs)
        finally:
            self._leave()

    async def async_(self, xs):
        self._enter()
        try:
            await asyncio.sleep(self.seconds)
            return good_rows(xs)
        finally:
            self._leave()


# -- bug 1: a hanging sync fallback must not exhaust the loop's default executor -------------------


def test_hanging_sync_fallback_under_aroute_leaves_the_default_executor_alone():
    hang = threading.Event()
    try:
        router = ThresholdRouter(
            unsure, Fallback(lambda xs: hang.wait(), on_error="keep_previous", timeout=0.2), 0.8
        )

        async def main():
            # A small default executor makes exhaustion quick to reach: the primary is sync too.
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
            results = []
            for _ in range(6):
                results.append(await asyncio.wait_for(router.aroute([1]), 3))
            return results

        results = run_bounded(main, limit=15)
        assert len(results) == 6
        for r in results:
            assert r.degraded.tolist() == [True] and r.stage.tolist() == [0]
            assert "StageTimeoutError" in r.errors[0]
    finally:
        hang.set()


def test_abandoned_sync_call_finishes_in_a_daemon_thread():
    release = threading.Event()
    names = []

    def hangs(xs):
        names.append((threading.current_thread().name, threading.current_thread().daemon))
        release.wait(10)
        return good_rows(xs)

    router = ThresholdRouter(unsure, Fallback(hangs, on_error="abstain", timeout=0.05, name="slow"), 0.8)
    try:
        result = run_bounded(lambda: router.aroute([1, 2]), limit=10)
        assert result.degraded.all()
        assert names and names[0][1] is True and "confroute" in names[0][0]
    finally:
        release.set()


# -- bug 2: a cancelled or interrupted half-open trial must not leave the breaker stuck ------------


def _open_breaker(now):
    cb = CircuitBreaker(failure_threshold=1, reset_after=5, clock=lambda: now[0])
    cb.record(False)
    now[0] = 10.0  # past reset_after: the next call is the half-open trial
    return cb


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_breaker_trial_cancelled_by_callers_deadline(flavour):
    now = [0.0]
    cb = _open_breaker(now)
    release = threading.Event()

    def hangs_sync(xs):
        release.wait(10)
        return good_rows(xs)

    async def hangs_async(xs):
        await asyncio.sleep(10)

    fn = hangs_sync if flavour == "sync" else hangs_async
    router = ThresholdRouter(unsure, Fallback(CallablePredictor(fn), on_error="abstain", circuit_breaker=cb), 0.8)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(router.aroute([1]), 0.1)

    try:
        run_bounded(main, limit=10)
        assert cb.state == "open"  # not stuck half-open: the next call may be the trial again
        assert cb.allow() and cb.state == "half_open"
        cb.record(True)
        assert cb.state == "closed"
    finally:
        release.set()


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_breaker_trial_interrupted_by_keyboard_interrupt(timeout):
    now = [0.0]
    cb = _open_breaker(now)
    interrupt = [True]

    def api(xs):
        if interrupt[0]:
            raise KeyboardInterrupt
        return good_rows(xs)

    router = ThresholdRouter(unsure, Fallback(api, on_error="abstain", circuit_breaker=cb, timeout=timeout), 0.8)
    with pytest.raises(KeyboardInterrupt):
        router.route([1])
    assert cb.state == "open"
    interrupt[0] = False
    result = router.route([1])  # the trial is allowed again, succeeds, closes the breaker
    assert not result.degraded.any() and cb.state == "closed"


# -- bug 3: SystemExit / KeyboardInterrupt always propagate ---------------------------------------


@pytest.mark.parametrize("timeout", [None, 5.0])
@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()])
@pytest.mark.parametrize("policy", ["keep_previous", "abstain"])
def test_base_exceptions_propagate_with_and_without_timeout(timeout, exc, policy):
    def api(xs):
        raise exc

    router = ThresholdRouter(unsure, Fallback(api, on_error=policy, timeout=timeout, retries=2, backoff=0), 0.8)
    with pytest.raises(type(exc)):
        router.route([1, 2])

    async def main():
        return await router.aroute([1, 2])

    with pytest.raises(type(exc)):
        run_bounded(main, limit=10)


# -- bug 4: max_concurrency bounds the stage, across every concurrent caller ----------------------


def test_max_concurrency_bounds_threads_and_concurrent_aroute_together():
    probe = InFlight(seconds=0.005)
    fb = Fallback(probe.sync, batch_size=1, max_concurrency=2, on_error="raise")
    router = ThresholdRouter(unsure, fb, 0.8)
    errors = []

    def thread_caller():
        try:
            for _ in range(3):
                r = router.route(list(range(4)))
                assert (r.stage == 1).all()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    async def many():
        results = await asyncio.gather(*(router.aroute(list(range(3))) for _ in range(64)))
        assert all((r.stage == 1).all() for r in results)

    threads = [threading.Thread(target=thread_caller, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    run_bounded(many, limit=60)
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert not errors, errors
    assert probe.calls == 8 * 3 * 4 + 64 * 3
    assert probe.peak == 2


def test_max_concurrency_bounds_async_fallback_across_64_callers():
    probe = InFlight(seconds=0.002)
    fb = Fallback(CallablePredictor(probe.async_), batch_size=2, max_concurrency=3)
    router = ThresholdRouter(unsure, fb, 0.8)

    async def many():
        return await asyncio.gather(*(router.aroute(list(range(5))) for _ in range(64)))

    results = run_bounded(many, limit=60)
    assert all((r.stage == 1).all() for r in results)
    assert probe.calls == 64 * 3 and probe.peak == 3


def test_abandoned_sync_calls_keep_their_slot_until_they_end():
    # A timed-out call is still running at the API, so it still counts against max_concurrency:
    # a stage never has more than max_concurrency calls in flight, and never more threads.
    release = threading.Event()
    probe_lock, active, peak = threading.Lock(), [0], [0]

    def hangs(xs):
        with probe_lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        release.wait(10)
        with probe_lock:
            active[0] -= 1
        return good_rows(xs)

    fb = Fallback(hangs, on_error="abstain", timeout=0.05, max_concurrency=2, batch_size=1)
    router = ThresholdRouter(unsure, fb, 0.8)
    try:
        t0 = time.perf_counter()
        for _ in range(3):
            result = router.route([1, 2, 3])
            assert result.degraded.all()
        run_bounded(lambda: router.aroute([1, 2, 3]), limit=10)
        assert time.perf_counter() - t0 < 5
        assert peak[0] == 2
        assert any("no free call slot" in e or "within 0.05 s" in e for e in result.errors)
    finally:
        release.set()


# -- bug 5: under on_error="raise", aroute cancels the sibling batches ----------------------------


def test_aroute_raise_cancels_sibling_batches():
    started, cancelled = [], []

    async def api(xs):
        started.append(list(xs))
        if xs[0] == 0:
            raise ConnectionError("down")
        try:
            await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            cancelled.append(list(xs))
            raise
        return good_rows(xs)

    fb = Fallback(CallablePredictor(api), batch_size=1, max_concurrency=3, on_error="raise")
    router = ThresholdRouter(unsure, fb, 0.8)

    async def main():
        with pytest.raises(ConnectionError):
            await router.aroute(list(range(10)))
        n_started = len(started)
        await asyncio.sleep(0.3)  # the siblings would have made their calls by now
        return n_started

    n_started = run_bounded(main, limit=10)
    assert len(started) == n_started <= 3  # nothing started after the error
    assert sorted(x for (x,) in cancelled) == sorted(x for (x,) in started if x != 0)


def test_route_raise_does_not_start_queued_batches():
    started = []
    lock = threading.Lock()

    def api(xs):
        with lock:
            started.append(xs[0])
        if xs[0] == 0:
            raise ConnectionError("down")
        time.sleep(0.05)
        return good_rows(xs)

    fb = Fallback(api, batch_size=1, max_concurrency=2, on_error="raise")
    with pytest.raises(ConnectionError):
        ThresholdRouter(unsure, fb, 0.8).route(list(range(20)))
    time.sleep(0.2)
    assert len(started) <= 3


# -- bug 8: parameters are validated at construction -----------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backoff": -1}, "backoff must be a finite number >= 0"),
        ({"backoff": float("nan")}, "backoff must be a finite number >= 0"),
        ({"max_backoff": -1}, "max_backoff must be a finite number >= 0"),
        ({"retries": 1.5}, "retries must be an integer >= 0"),
        ({"retries": True}, "retries must be an integer >= 0"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
        ({"max_concurrency": 2.5}, "max_concurrency must be an integer >= 1"),
        ({"max_concurrency": 0}, "max_concurrency must be an integer >= 1"),
        ({"timeout": float("nan")}, "timeout must be a finite number > 0"),
        ({"timeout": float("inf")}, "timeout must be a finite number > 0"),
        ({"timeout": "5"}, "timeout must be a finite number > 0"),
        ({"retry_on": "ConnectionError"}, "retry_on must be a tuple of exception classes"),
        ({"retry_on": (KeyboardInterrupt,)}, "retry_on must be a tuple of exception classes"),
        ({"circuit_breaker": 5}, "circuit_breaker must be a CircuitBreaker"),
    ],
)
def test_fallback_parameters_checked_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Fallback(good_rows, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reset_after": float("nan")}, "reset_after must be a finite number >= 0"),
        ({"reset_after": -1}, "reset_after must be a finite number >= 0"),
        ({"failure_threshold": 1.5}, "failure_threshold must be an integer >= 1"),
        ({"failure_threshold": 0}, "failure_threshold must be an integer >= 1"),
    ],
)
def test_circuit_breaker_parameters_checked(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CircuitBreaker(**kwargs)


# -- bug 12 (fallback part): the breaker keeps the cause; jitter has its own generator -------------


def test_breaker_opening_during_retries_keeps_the_real_cause():
    def api(xs):
        raise ConnectionError("upstream 503")

    cb = CircuitBreaker(failure_threshold=2, reset_after=60)
    fb = Fallback(api, on_error="abstain", retries=3, backoff=0, circuit_breaker=cb, split_on_failure=True)
    result = ThresholdRouter(unsure, fb, 0.8).route([1, 2, 3, 4])
    assert result.degraded.all()
    for e in result.errors:
        assert "CircuitOpenError" in e and "ConnectionError: upstream 503" in e
    # later calls, refused outright, still say why the breaker opened
    later = ThresholdRouter(unsure, fb, 0.8).route([5])
    assert "ConnectionError: upstream 503" in later.errors[0]
    raising = Fallback(api, retries=3, backoff=0, circuit_breaker=CircuitBreaker(2, 60))
    with pytest.raises(CircuitOpenError) as info:
        ThresholdRouter(unsure, raising, 0.8).route([1])
    assert isinstance(info.value.__cause__, ConnectionError)


def test_jitter_uses_the_stages_own_generator():
    random.seed(123)
    state = random.getstate()
    a = Fallback(good_rows, backoff=1.0, random_state=7)
    b = Fallback(good_rows, backoff=1.0, random_state=7)
    waits_a = [a._wait(1) for _ in range(50)]
    assert waits_a == [b._wait(1) for _ in range(50)]
    assert 0.5 <= min(waits_a) and max(waits_a) < 1.5 and len(set(waits_a)) > 40
    assert random.getstate() == state  # the global generator was not touched


def test_route_timeout_still_bounded_with_hanging_fallback_and_threads():
    # The sync path under many threads: every call returns within the timeout budget.
    release = threading.Event()
    fb = Fallback(lambda xs: release.wait(10), on_error="keep_previous", timeout=0.05, max_concurrency=4)
    router = ThresholdRouter(unsure, fb, 0.8)
    try:
        with ThreadPoolExecutor(8) as pool:
            t0 = time.perf_counter()
            results = list(pool.map(lambda _: router.route([1]), range(16)))
        assert time.perf_counter() - t0 < 5
        assert all(r.degraded.all() and "StageTimeoutError" in r.errors[0] for r in results)
    finally:
        release.set()


def test_stage_timeout_error_message():
    # the message of a call that could not get a slot in time names the limit
    release = threading.Event()
    fb = Fallback(lambda xs: release.wait(10), on_error="abstain", timeout=0.05, max_concurrency=1)
    router = ThresholdRouter(unsure, fb, 0.8)
    try:
        router.route([1])
        second = router.route([1])
        assert second.errors[0].startswith("StageTimeoutError: ")
        assert "no free call slot" in second.errors[0] and "max_concurrency=1" in second.errors[0]
    finally:
        release.set()


def test_a_stage_with_a_concurrency_limit_pickles():
    # Routers are pickled to Ray workers: a copy gets slots of its own, with the same limit.
    # (A circuit breaker is shared state and stays unpicklable: build the router in the worker.)
    import pickle

    fb = Fallback(good_rows, max_concurrency=3, random_state=1)
    copy = pickle.loads(pickle.dumps(fb))
    assert copy.max_concurrency == 3 and copy._slots.limit == 3 and copy._slots.in_use == 0
    assert copy._wait(1) == fb._wait(1)
    with pytest.raises(TypeError):
        pickle.dumps(Fallback(good_rows, circuit_breaker=CircuitBreaker()))
