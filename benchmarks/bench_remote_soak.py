"""Remote chaos soak: a remote OIP stage behind a misbehaving server, 32 requests in flight.

A loopback server (tests/_faulty_server.py, in its own process) answers the stage's requests
with a fixed, seeded mix of faults: slow answers (past every deadline), bodies trickled one byte
at a time, hangs, HTTP 500s (some with a JSON list body) and connection resets. The router
(a local primary, then ``Fallback(OIPPredictor(...), on_error="keep_previous")``) is driven by
``--in-flight`` callers at once: threads calling ``route`` (``--flavour sync``) or tasks calling
``aroute`` on one event loop (``--flavour async``), for ``--seconds``.

What is checked, and reported (figures in docs/reliability.md):

* **lost or misplaced inputs**: each caller routes batches of fresh ids; each stage's label is a
  known function of the id, so a dropped, duplicated or swapped row is counted - must be 0;
* **deadlines**: every call's wall time against its deadline, ``min(--oip-timeout,
  --stage-timeout)`` (the predictor's end-to-end deadline, or the Fallback's timeout): the
  largest ratio, and how many calls went past 110%;
* **sockets**: the process's open TCP connections to the server (``/proc/self/fd`` against
  ``/proc/self/net/tcp``), sampled every 0.1 s, against the pool size (``--max-connections``);
* **memory**: resident set size sampled every second: after the first 10% of the run, the
  peak, and at the end; threads at the end against the start.

    python benchmarks/bench_remote_soak.py --flavour sync --seconds 60

Results go to benchmarks/results/remote-soak-<flavour>-<deadline>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from confroute import CallablePredictor, Fallback, OIPPredictor, ThresholdRouter

ROOT = Path(__file__).resolve().parents[1]
MIX = "ok=0.55,slow=0.1,trickle=0.1,hang=0.05,500=0.08,500-list=0.04,reset=0.08"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


sys.path.insert(0, str(ROOT / "tests"))
from _faulty_server import client_sockets  # noqa: E402


def primary_score(ids: np.ndarray) -> np.ndarray:
    return ((ids * 2654435761) % 1000) / 1000 * 0.5 + 0.5  # about 40% below the 0.8 threshold


def primary(xs: Any) -> np.ndarray:
    ids = np.asarray(xs, dtype=np.float64)[:, 0].astype(np.int64)
    p, lab = primary_score(ids), ids % 2
    rows = np.empty((ids.size, 2))
    rows[np.arange(ids.size), lab] = p
    rows[np.arange(ids.size), 1 - lab] = 1 - p
    return rows


def wrong_rows(result: Any, ids: np.ndarray) -> int:
    """Rows not answered as their id says (tests/_faulty_server.py answers (id // 3) % 2)."""
    expected = np.where(result.stage == 1, (ids // 3) % 2, ids % 2)
    good = np.isin(result.stage, (0, 1)) & (result.label_index == expected)
    deferred = primary_score(ids) < 0.8
    good &= (result.stage == 1) | ~deferred | result.degraded  # kept at stage 0 only when flagged
    return int(len(ids) - good.sum()) + abs(len(result) - len(ids))


def deadline_figures(lat: np.ndarray, timed_out: np.ndarray, deadline: float) -> dict[str, Any]:
    """elapsed / deadline of the calls that ran into the deadline (p50, p99, max): 1.00 is a
    deadline kept to the millisecond; what is above is late."""
    ratio = lat[timed_out] / deadline
    if not ratio.size:
        return {"calls_timed_out": 0}
    return {"calls_timed_out": int(ratio.size),
            "timed_out_over_deadline_p50": round(float(np.median(ratio)), 3),
            "timed_out_over_deadline_p99": round(float(np.quantile(ratio, 0.99)), 3),
            "timed_out_over_deadline_max": round(float(ratio.max()), 3)}


def by_tenth(ended: np.ndarray, lat: np.ndarray) -> list[tuple[int, float]]:
    """(calls, median call time) in each tenth of the run: a trend shows here."""
    edges = np.linspace(ended.min(), ended.max() + 1e-9, 11)
    out = []
    for k in range(10):
        m = (ended >= edges[k]) & (ended < edges[k + 1])
        out.append((int(m.sum()), round(float(np.median(lat[m])), 3) if m.any() else float("nan")))
    return out


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "_faulty_server.py"), "--mix", args.mix, "--seed", str(args.seed),
             "--delay", str(args.slow_delay), "--trickle-interval", "0.05"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.server.stdout is not None
        self.url = self.server.stdout.readline().strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        self.predictor = OIPPredictor(self.url, "m", output="probs", input_name="x", output_name="probs",
                                      classes=["neg", "pos"], timeout=args.oip_timeout,
                                      max_connections=args.max_connections)
        stage = Fallback(self.predictor, on_error="keep_previous", timeout=args.stage_timeout)
        self.router = ThresholdRouter(CallablePredictor(primary, name="local"), stage, threshold=0.8)
        self.deadline = min(args.oip_timeout, args.stage_timeout)
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.timed_out: list[bool] = []
        self.ended: list[float] = []
        self.rows = self.wrong = self.degraded = self.by_remote = 0
        self.errors: dict[str, int] = {}
        self.sockets_peak = 0
        self.rss: list[float] = []
        self.lags: list[float] = []
        self.stop = threading.Event()

    def record(self, ids: np.ndarray, result: Any, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.timed_out.append(any(str(e).startswith("StageTimeoutError") for e in result.errors[result.degraded]))
            self.ended.append(time.monotonic())
            self.rows += len(ids)
            self.wrong += wrong_rows(result, ids)
            self.degraded += int(result.degraded.sum())
            self.by_remote += int((result.stage == 1).sum())
            for e in result.errors[result.degraded]:
                kind = str(e).split(":", 1)[0]
                self.errors[kind] = self.errors.get(kind, 0) + 1

    def batch(self, caller: int, k: int) -> np.ndarray:
        start = (caller * 10**7 + k * self.args.batch)
        return np.arange(start, start + self.args.batch)

    def sample(self) -> None:
        """Sockets every 0.1 s, RSS every second, and how late the 0.1 s wake-up came (the
        machine's scheduling lag: a deadline cannot fire earlier than its thread runs)."""
        next_rss = 0.0
        while True:
            t = time.perf_counter()
            if self.stop.wait(0.1):
                break
            self.lags.append(time.perf_counter() - t - 0.1)
            n = client_sockets(self.port)
            with self.lock:
                self.sockets_peak = max(self.sockets_peak, n)
            if time.monotonic() >= next_rss:
                self.rss.append(rss_mib())
                next_rss = time.monotonic() + 1.0

    def sync_caller(self, caller: int, until: float) -> None:
        k = 0
        while time.monotonic() < until:
            ids = self.batch(caller, k)
            t0 = time.perf_counter()
            r = self.router.route([[float(i), 0.0] for i in ids])
            self.record(ids, r, time.perf_counter() - t0)
            k += 1

    async def async_caller(self, caller: int, until: float) -> None:
        k = 0
        while time.monotonic() < until:
            ids = self.batch(caller, k)
            t0 = time.perf_counter()
            r = await self.router.aroute([[float(i), 0.0] for i in ids])
            self.record(ids, r, time.perf_counter() - t0)
            k += 1

    def run(self) -> dict[str, Any]:
        args = self.args
        sockets_start = client_sockets(self.port)  # before the predictor's first connection
        self.router.route([[0.0, 0.0]])  # warm up: imports, the client
        threads_start = threading.active_count()
        sampler = threading.Thread(target=self.sample, daemon=True)
        sampler.start()
        until = time.monotonic() + args.seconds
        t0 = time.perf_counter()
        if args.flavour == "sync":
            callers = [threading.Thread(target=self.sync_caller, args=(c + 1, until)) for c in range(args.in_flight)]
            for t in callers:
                t.start()
            for t in callers:
                t.join()
        else:
            async def all_callers() -> None:
                await asyncio.gather(*(self.async_caller(c + 1, until) for c in range(args.in_flight)))
            asyncio.run(all_callers())
        elapsed = time.perf_counter() - t0
        self.stop.set()
        sampler.join()
        settle = time.monotonic() + max(args.oip_timeout, args.stage_timeout) + 5
        while threading.active_count() > threads_start and time.monotonic() < settle:
            time.sleep(0.05)  # abandoned sync calls end at the predictor's own deadline
        threads_end = threading.active_count()
        self.predictor.close()
        sockets_after_close = client_sockets(self.port)
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.close()
        server = json.loads(self.server.stdout.readline())
        self.server.wait(10)
        lat = np.array(self.latencies)
        warm = self.rss[max(1, len(self.rss) // 10)] if len(self.rss) > 1 else self.rss[0]
        return {
            "flavour": args.flavour, "in_flight": args.in_flight, "seconds": round(elapsed, 1),
            "calls": int(lat.size), "rows": self.rows, "rows_wrong_or_lost": self.wrong,
            "rows_answered_by_remote": self.by_remote, "rows_degraded": self.degraded, "degraded_errors": self.errors,
            "oip_timeout_s": args.oip_timeout, "stage_timeout_s": args.stage_timeout, "deadline_s": self.deadline,
            "call_s_p50": round(float(np.median(lat)), 3), "call_s_p99": round(float(np.quantile(lat, 0.99)), 3),
            "call_s_max": round(float(lat.max()), 3), "max_over_deadline": round(float(lat.max()) / self.deadline, 3),
            "calls_over_110pct": int((lat > 1.1 * self.deadline).sum()),
            **deadline_figures(lat, np.array(self.timed_out), self.deadline),
            "calls_and_p50_s_by_tenth": by_tenth(np.array(self.ended), lat),
            "sampler_wakeup_lag_s_p99": round(float(np.quantile(self.lags, 0.99)), 3) if self.lags else None,
            "sampler_wakeup_lag_s_max": round(max(self.lags), 3) if self.lags else None,
            "max_connections": args.max_connections, "sockets_at_start": sockets_start,
            "sockets_peak": self.sockets_peak, "sockets_peak_above_start": self.sockets_peak - sockets_start,
            "sockets_after_close": sockets_after_close,
            "rss_mib_after_10pct": round(warm, 1), "rss_mib_peak": round(max(self.rss), 1),
            "rss_mib_end": round(self.rss[-1], 1),
            "rss_mib_at_tenths": [round(self.rss[min(len(self.rss) - 1, k * len(self.rss) // 10)], 1) for k in range(11)], "threads_start": threads_start, "threads_end": threads_end,
            "server": server, "mix": args.mix, "python": platform.python_version(), "cpus": os.cpu_count(),
            "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flavour", choices=["sync", "async"], default="sync")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--in-flight", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4, help="inputs per call")
    ap.add_argument("--oip-timeout", type=float, default=1.0, help="the predictor's end-to-end deadline")
    ap.add_argument("--stage-timeout", type=float, default=2.0, help="the Fallback's timeout")
    ap.add_argument("--max-connections", type=int, default=32)
    ap.add_argument("--slow-delay", type=float, default=5.0, help="seconds a 'slow' answer takes")
    ap.add_argument("--mix", default=MIX)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSON file (default: benchmarks/results/remote-soak-<flavour>-<which>.json)")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    out = Soak(args).run()
    which = "oip-deadline" if args.oip_timeout <= args.stage_timeout else "stage-timeout"
    path = Path(args.out or Path(__file__).parent / "results" / f"remote-soak-{args.flavour}-{which}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
