"""Chaos soak: a million inputs through ``aroute_stream`` while the fallback misbehaves.

The fallback (a sync function, so it runs in confroute's own daemon threads; or ``async def``
with ``--flavour async``) fails calls at random, hangs past its timeout at random, and has
short outages that open the circuit breaker. Meanwhile "chaos callers" share the router and
are cancelled at random moments by their own ``asyncio.wait_for`` deadlines.

What is checked, and reported (the figures in docs/reliability.md come from here):

* **lost inputs**: every input of the stream must come back exactly once, in order, with the
  answer of the stage that answered it (each stage's label is a known function of the input id,
  different per stage, so a dropped, duplicated or reordered row is detected) - must be 0;
* **threads and asyncio tasks** alive at the end against the baseline before the run - must
  return to the baseline (abandoned calls end once their hang does);
* **concurrency slots** in use at the end (must be 0) and the most calls in flight at once
  (must be <= ``max_concurrency``), the breaker's final state (never stuck half-open);
* **resident memory** at the start, its peak (sampled after every chunk) and at the end.

    python benchmarks/bench_chaos.py [--n 1000000] [--flavour sync|async] [--chunk-size 1000]

Results go to benchmarks/results/chaos-<flavour>.json. Everything runs on one event loop thread
plus the stage's daemon threads (``max_concurrency`` of them at most, plus hung ones).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from confroute import CallablePredictor, CircuitBreaker, Fallback, ThresholdRouter


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def primary_score(ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random confidence per id (about 40% fall below the 0.8 threshold)."""
    return ((ids * 2654435761) % 1000) / 1000 * 0.5 + 0.5


def primary_label(ids: np.ndarray) -> np.ndarray:
    return ids % 2


def fallback_label(ids: np.ndarray) -> np.ndarray:
    return (ids // 3) % 2  # differs from the primary's on a third of the ids


class ChaosAPI:
    """The misbehaving fallback: failures, hangs past the timeout, outages; counts calls in flight."""

    def __init__(self, seed: int, fail: float, hang: float, hang_seconds: float, outage: float,
                 outage_seconds: float, latency: float) -> None:
        self.rng = random.Random(seed)
        self.latency = latency
        self.fail, self.hang, self.hang_seconds = fail, hang, hang_seconds
        self.outage, self.outage_seconds = outage, outage_seconds
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.active = self.peak = 0
        self.calls = self.failures = self.hangs = self.outages = 0

    def _plan(self) -> str:
        with self.lock:
            self.calls += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
            now = time.monotonic()
            if now < self.down_until:
                self.failures += 1
                return "fail"
            u = self.rng.random()
            if u < self.outage:
                self.outages += 1
                self.down_until = now + self.outage_seconds
                self.failures += 1
                return "fail"
            if u < self.outage + self.fail:
                self.failures += 1
                return "fail"
            # The first call that is not failed hangs, whatever the draw: every run has a hang
            # past the timeout (on a loaded machine, outages may leave few calls to draw from).
            if u < self.outage + self.fail + self.hang or (self.hang > 0 and self.hangs == 0):
                self.hangs += 1
                return "hang"
            return "ok"

    def _done(self) -> None:
        with self.lock:
            self.active -= 1

    @staticmethod
    def _answer(xs: Any) -> np.ndarray:
        ids = np.asarray(xs, dtype=np.int64)
        return np.eye(2)[fallback_label(ids)] * 0.9 + 0.05

    def sync(self, xs: Any) -> np.ndarray:
        try:
            plan = self._plan()
            if plan == "fail":
                raise ConnectionError("chaos: upstream failed")
            time.sleep(self.hang_seconds if plan == "hang" else self.latency)
            return self._answer(xs)
        finally:
            self._done()

    async def async_(self, xs: Any) -> np.ndarray:
        try:
            plan = self._plan()
            if plan == "fail":
                raise ConnectionError("chaos: upstream failed")
            await asyncio.sleep(self.hang_seconds if plan == "hang" else self.latency)
            return self._answer(xs)
        finally:
            self._done()


def build(args: argparse.Namespace) -> tuple[ThresholdRouter, ChaosAPI, CircuitBreaker]:
    api = ChaosAPI(args.seed, args.fail, args.hang, args.timeout * 3, args.outage, args.outage_seconds, args.latency)

    def primary(xs: Any) -> np.ndarray:
        ids = np.asarray(xs, dtype=np.int64)
        p = primary_score(ids)
        rows = np.empty((ids.size, 2))
        lab = primary_label(ids)
        rows[np.arange(ids.size), lab] = p
        rows[np.arange(ids.size), 1 - lab] = 1 - p
        return rows

    breaker = CircuitBreaker(failure_threshold=5, reset_after=args.outage_seconds / 2)
    fn = api.sync if args.flavour == "sync" else api.async_
    fallback = Fallback(
        CallablePredictor(fn, name="chaos"), on_error="keep_previous", retries=1, backoff=0.001,
        max_backoff=0.01, timeout=args.timeout, batch_size=args.batch_size, max_concurrency=args.max_concurrency,
        circuit_breaker=breaker, split_on_failure=True, random_state=args.seed,
    )
    router = ThresholdRouter(CallablePredictor(primary, name="cheap"), fallback, threshold=0.8)
    return router, api, breaker


def check_chunk(result: Any, start: int) -> tuple[int, int]:
    """(rows answered correctly for their position, rows answered by the fallback)."""
    ids = np.arange(start, start + len(result))
    expected = np.where(result.stage == 1, fallback_label(ids), primary_label(ids))
    good = (result.stage >= 0) & (result.labels == expected)
    # A deferred input kept its primary answer only when flagged degraded.
    deferred = primary_score(ids) < 0.8
    good &= (result.stage == 1) | ~deferred | result.degraded
    good &= (result.stage == 0) | (result.stage == 1)
    return int(good.sum()), int((result.stage == 1).sum())


async def run(args: argparse.Namespace) -> dict[str, Any]:
    router, api, breaker = build(args)
    await router.aroute(list(range(10)))  # warm up (first imports and allocations)
    tasks_start = len(asyncio.all_tasks())
    rss = [rss_mib()]
    stop = asyncio.Event()
    chaos = {"calls": 0, "cancelled": 0, "completed": 0, "bad": 0}
    rng = random.Random(args.seed + 1)

    async def chaos_caller(k: int) -> None:
        base = 10**9 + k * 10**7
        while not stop.is_set():
            n = rng.randint(1, 200)
            chaos["calls"] += 1
            try:
                r = await asyncio.wait_for(router.aroute(list(range(base, base + n))), rng.uniform(0.0, 0.1))
            except asyncio.TimeoutError:
                chaos["cancelled"] += 1
            else:
                chaos["completed"] += 1
                chaos["bad"] += len(r) - check_chunk(r, base)[0]
            await asyncio.sleep(0)

    callers = [asyncio.ensure_future(chaos_caller(k)) for k in range(args.callers)]
    seen = good = by_fallback = degraded = 0
    t0 = time.perf_counter()
    async for chunk in router.aroute_stream(range(args.n), chunk_size=args.chunk_size):
        g, f = check_chunk(chunk, seen)
        seen += len(chunk)
        good += g
        by_fallback += f
        degraded += int(chunk.degraded.sum())
        rss.append(rss_mib())
    elapsed = time.perf_counter() - t0
    stop.set()
    await asyncio.gather(*callers)
    await asyncio.sleep(0)
    tasks_end = len(asyncio.all_tasks())
    return {
        "router": router, "api": api, "breaker": breaker, "elapsed": elapsed, "seen": seen, "good": good,
        "by_fallback": by_fallback, "degraded": degraded, "rss": rss, "tasks_start": tasks_start,
        "tasks_end": tasks_end, "chaos": chaos,
    }


def _stage_threads() -> int:
    """The fallback's own daemon threads (named ``confroute-chaos``) still alive."""
    return sum(t.name == "confroute-chaos" for t in threading.enumerate())


def chaos_soak(args: argparse.Namespace) -> dict[str, Any]:
    gc.collect()  # predictors dropped before (by other tests) stop their threads now, not mid-run
    threads_before = threading.active_count()
    rss_start = rss_mib()
    r = asyncio.run(run(args))
    threads_at_end = threading.active_count()
    settle = time.monotonic() + 10 * args.timeout + 5
    # wait for the hung calls' own threads (another thread ending must not end the wait early)
    while (_stage_threads() or threading.active_count() > threads_before) and time.monotonic() < settle:
        time.sleep(0.01)
    fallback = r["router"].fallback
    api = r["api"]
    return {
        "n": args.n,
        "flavour": args.flavour,
        "chunk_size": args.chunk_size,
        "seconds": round(r["elapsed"], 2),
        "inputs_per_s": round(args.n / r["elapsed"]),
        "lost_inputs": args.n - r["good"],
        "rows_returned": r["seen"],
        "answered_by_fallback": r["by_fallback"],
        "degraded_rows": r["degraded"],
        "fallback_calls": api.calls,
        "fallback_failures": api.failures,
        "fallback_hangs_past_timeout": api.hangs,
        "fallback_outages": api.outages,
        "max_concurrency": args.max_concurrency,
        "peak_calls_in_flight": api.peak,
        "slots_in_use_at_end": fallback._slots.in_use,
        "breaker_state_at_end": r["breaker"].state,
        "chaos_callers": args.callers,
        "chaos_calls": r["chaos"]["calls"],
        "chaos_calls_cancelled": r["chaos"]["cancelled"],
        "chaos_calls_completed": r["chaos"]["completed"],
        "chaos_rows_wrong": r["chaos"]["bad"],
        "threads_baseline": threads_before,
        "threads_when_loop_returned": threads_at_end,
        "threads_after_hung_calls_ended": threading.active_count(),
        "tasks_baseline": r["tasks_start"],
        "tasks_at_end": r["tasks_end"],
        "rss_mib_start": round(rss_start, 1),
        "rss_mib_peak_sampled": round(max(r["rss"]), 1),
        "rss_mib_end": round(r["rss"][-1], 1),
        "peak_rss_mib_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "timeout_s": args.timeout,
        "latency_s": args.latency,
        "outage_rate": args.outage,
        "outage_seconds": args.outage_seconds,
        "fail_rate": args.fail,
        "hang_rate": args.hang,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--flavour", choices=["sync", "async"], default="sync")
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--max-concurrency", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=0.05)
    ap.add_argument("--fail", type=float, default=0.10, help="share of calls that fail")
    ap.add_argument("--hang", type=float, default=0.01, help="share of calls that hang 3x past the timeout")
    ap.add_argument("--outage", type=float, default=0.001, help="share of calls that start an outage")
    ap.add_argument("--outage-seconds", type=float, default=0.1, help="every call fails during an outage")
    ap.add_argument("--latency", type=float, default=0.001, help="seconds a healthy call takes")
    ap.add_argument("--callers", type=int, default=4, help="chaos callers cancelled at random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSON file (default: benchmarks/results/chaos-<flavour>.json)")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    out = chaos_soak(args)
    path = Path(args.out or Path(__file__).parent / "results" / f"chaos-{args.flavour}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
