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
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from confroute import CallablePredictor, Fallback, OIPPredictor, ThresholdRouter

ROOT = Path(__file__).resolve().parents[1]
MIX = "ok=0.55,slow=0.1,trickle=0.1,hang=0.05,500=0.08,500-list=0.04,reset=0.08"



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


def tenths(series: list[float]) -> list[float]:
    """The series at the start, after each tenth of the run, and at the end."""
    return [round(series[min(len(series) - 1, k * len(series) // 10)], 1) for k in range(11)]


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
        self.calls_log = tempfile.NamedTemporaryFile(prefix="confroute-soak-", suffix=".log", delete=False).name
        stage = TimedFallback(self.predictor, on_error="keep_previous", timeout=args.stage_timeout)
        stage.log = self.calls_log  # each stage call's own seconds (the route call's include the rest)
        stage.sink = self.stage_lines = []
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
        self.rss_by: dict[str, list[float]] = {}  # per process (the replicas of the served app)
        self.lags: list[float] = []
        self.stop = threading.Event()
        self.pids: dict[str, int | str] = {"driver": "self"}  # the processes whose sockets and memory count

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
            n = sum(client_sockets(self.port, pid) for pid in self.pids.values())
            with self.lock:
                self.sockets_peak = max(self.sockets_peak, n)
            if time.monotonic() >= next_rss:
                each = {name: rss_of(pid) for name, pid in self.pids.items()}
                self.rss.append(sum(each.values()))
                for name, mib in each.items():
                    self.rss_by.setdefault(name, []).append(mib)
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

    def stage_calls(self) -> dict[str, Any]:
        """The remote stage's own record (in the replica, for the served app): each Fallback
        call's seconds against the deadline that binds."""
        if self.args.flavour == "serve":
            lines = [line.split() for line in open(self.calls_log, encoding="utf-8") if line.strip()]
        else:
            lines = [line.split() for line in self.stage_lines]
        sec = np.array([float(x[1]) for x in lines])
        timed_out = np.array([x[2] == "1" for x in lines], dtype=bool)
        t = self.deadline  # the binding one: the Fallback's timeout or the predictor's deadline
        figures = {"stage_calls": int(sec.size), "stage_call_s_p50": round(float(np.median(sec)), 3),
                   "stage_call_s_max": round(float(sec.max()), 3),
                   "stage_calls_over_110pct": int((sec > 1.1 * t).sum()),
                   "stage_calls_rows_mean": round(float(np.mean([int(x[3]) for x in lines])), 2)}
        figures.update({"stage_" + k: v for k, v in deadline_figures(sec, timed_out, t).items()})
        return figures

    async def loop_lag(self) -> None:
        """How late a 0.1 s sleep of a task on the callers' event loop comes back (a timer of
        that loop, a deadline's included, cannot fire while the loop runs other callbacks)."""
        self.loop_lags: list[float] = []
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.1)
            self.loop_lags.append(time.perf_counter() - t - 0.1)

    def loop_lag_figures(self) -> dict[str, Any]:
        lags = getattr(self, "loop_lags", None)
        if not lags:
            return {}
        return {"callers_loop_lag_s_p99": round(float(np.quantile(lags, 0.99)), 3),
                "callers_loop_lag_s_max": round(max(lags), 3)}

    def run(self) -> dict[str, Any]:
        args = self.args
        sockets_start = client_sockets(self.port)  # before the predictor's first connection
        self.router.route([[0.0, 0.0]])  # warm up: imports, the client
        self.stage_lines.clear()
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
                ticker = asyncio.ensure_future(self.loop_lag())
                await asyncio.gather(*(self.async_caller(c + 1, until) for c in range(args.in_flight)))
                ticker.cancel()
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
        return self.summary(elapsed, {**self.stage_calls(), "sockets_at_start": sockets_start,
                                      "sockets_after_close": sockets_after_close, **self.loop_lag_figures(),
                                      "threads_start": threads_start, "threads_end": threads_end})

    def close_server(self) -> dict[str, Any]:
        """Stop the faulty server; its counters."""
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.close()
        server: dict[str, Any] = json.loads(self.server.stdout.readline())
        self.server.wait(10)
        return server

    def summary(self, elapsed: float, extra: dict[str, Any]) -> dict[str, Any]:
        args = self.args
        server = self.close_server()
        lat = np.array(self.latencies)
        warm = self.rss[max(1, len(self.rss) // 10)] if len(self.rss) > 1 else self.rss[0]
        sockets_start = extra.get("sockets_at_start", 0)
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
            "max_connections": args.max_connections,
            "sockets_peak": self.sockets_peak, "sockets_peak_above_start": self.sockets_peak - sockets_start,
            "rss_mib_after_10pct": round(warm, 1), "rss_mib_peak": round(max(self.rss), 1),
            "rss_mib_end": round(self.rss[-1], 1),
            "rss_mib_at_tenths": tenths(self.rss),
            **extra, "server": server, "mix": args.mix, "python": platform.python_version(), "cpus": os.cpu_count(),
            "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        }


# -- the Ray Serve app -------------------------------------------------------------------------------

class TimedFallback(Fallback):
    """A Fallback that appends one line per :meth:`call` to ``log``: the replica's pid, the
    seconds the call took, whether it ran into its timeout, and the rows (how a stage replica's
    deadlines are measured: in the replica, per call)."""

    log = ""
    sink: list[str] | None = None

    def call(self, inputs: Any) -> Any:
        t0 = time.perf_counter()
        out = super().call(inputs)
        self.note(time.perf_counter() - t0, out)
        return out

    async def acall(self, inputs: Any) -> Any:
        t0 = time.perf_counter()
        out = await super().acall(inputs)
        self.note(time.perf_counter() - t0, out)
        return out

    def note(self, elapsed: float, out: Any) -> None:
        timed_out = any(str(e).startswith("StageTimeoutError") for e in out.errors if e)
        line = f"{os.getpid()} {elapsed:.6f} {int(timed_out)} {len(out.errors)}\n"
        if self.sink is not None:  # in-process: no file write on the callers' event loop
            self.sink.append(line)
            return
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(line)


def served_router(url: str, oip_timeout: float, stage_timeout: float, max_connections: int, log: str) -> Any:
    """The router each replica builds: the local primary, then the remote OIP stage (timed)."""
    remote = OIPPredictor(url, "m", output="probs", input_name="x", output_name="probs", classes=["neg", "pos"],
                          timeout=oip_timeout, max_connections=max_connections)
    stage = TimedFallback(remote, on_error="keep_previous", timeout=stage_timeout)
    stage.log = log
    return ThresholdRouter(CallablePredictor(primary, name="local", classes=["neg", "pos"]), stage, threshold=0.8)


def replica_pids(app: str) -> dict[str, int]:
    """``{deployment: pid}`` of the app's replicas (Ray titles them ``ray::ServeReplica:<app>:<deployment>``)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        marker = f"ServeReplica:{app}:"
        if marker in cmd:
            out[cmd.split(marker, 1)[1].split()[0]] = int(pid)
    return out


def rss_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def socket_fds(pid: int) -> int:
    """All socket descriptors of ``pid`` (Ray's own included)."""
    n = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return -1
    for fd in fds:
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


class JsonRows:
    """The columns of a ``/route`` answer that :func:`wrong_rows` reads."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.stage = np.array([r["stage"] for r in rows], dtype=np.int64)
        self.label_index = np.array([["neg", "pos"].index(r["label"]) if r["label"] in ("neg", "pos") else -1
                                     for r in rows], dtype=np.int64)
        self.degraded = np.array([bool(r["degraded"]) for r in rows], dtype=bool)
        self.errors = np.array([r.get("error") or "" for r in rows], dtype=object)

    def __len__(self) -> int:
        return int(self.stage.size)


class ServeSoak(Soak):
    """The soak through the Ray Serve app (``build_app``): ``--in-flight`` HTTP requests at once
    on ``/route``; the stage-1 replica's Fallback calls the faulty server."""

    def start_router(self) -> None:
        import ray
        from ray import cloudpickle, serve

        from confroute.integrations.serve import build_app

        args = self.args
        self.app = f"soak{os.getpid()}"
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if __name__ != "__main__":
            cloudpickle.register_pickle_by_value(sys.modules[__name__])  # replicas cannot import benchmarks/
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        factory = functools.partial(served_router, self.url, args.oip_timeout, args.stage_timeout,
                                    args.max_connections, self.calls_log)
        stage_opts = [{"ray_actor_options": {"num_cpus": 0.25}, "max_batch_size": 8},
                      {"ray_actor_options": {"num_cpus": 0.25}, "max_batch_size": args.batch,
                       "max_concurrent_batches": args.concurrent_batches, "max_ongoing_requests": 4 * args.in_flight}]
        app = build_app(factory, name=self.app, metrics=False, stage_options=stage_opts)
        serve.run(app, name=self.app, route_prefix="/")
        self.base = f"http://127.0.0.1:{port}"

    def stop_router(self) -> None:
        import ray
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()

    def serve_run(self) -> dict[str, Any]:  # long: one measured run, start to end
        import httpx

        args = self.args
        status: dict[int, int] = {}
        bad_bodies: list[str] = []

        async def caller(client: Any, c: int, until: float) -> None:
            k = 0
            while time.monotonic() < until:
                ids = self.batch(c, k)
                t0 = time.perf_counter()
                r = await client.post(self.base + "/route", json={"inputs": [[float(i), 0.0] for i in ids]})
                seconds = time.perf_counter() - t0
                status[r.status_code] = status.get(r.status_code, 0) + 1
                if r.status_code != 200 or "Traceback" in r.text:
                    bad_bodies.append(f"{r.status_code} {r.text[:300]}")
                    self.wrong += len(ids)
                else:
                    self.record(ids, JsonRows(r.json()["results"]), seconds)
                k += 1

        async def all_callers(seconds: float) -> None:
            limits = httpx.Limits(max_connections=2 * args.in_flight, max_keepalive_connections=2 * args.in_flight)
            async with httpx.AsyncClient(timeout=300, limits=limits) as client:
                until = time.monotonic() + seconds
                await asyncio.gather(*(caller(client, c + 1, until) for c in range(args.in_flight)))

        self.start_router()
        try:
            asyncio.run(all_callers(min(5.0, args.seconds / 10)))  # warm up: replicas, clients, pools
            pids = replica_pids(self.app)
            self.pids = pids
            start = {d: {"rss_mib": round(rss_of(p), 1), "socket_fds": socket_fds(p)} for d, p in pids.items()}
            self.reset()
            status.clear()
            bad_bodies.clear()
            sampler = threading.Thread(target=self.sample, daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            asyncio.run(all_callers(args.seconds))
            elapsed = time.perf_counter() - t0
            time.sleep(1.0)  # abandoned calls end at their deadline
            self.stop.set()
            sampler.join()
            end = {d: {"rss_mib": round(rss_of(p), 1), "socket_fds": socket_fds(p)} for d, p in pids.items()}
            conns_end = sum(client_sockets(self.port, p) for p in pids.values())
        finally:
            self.stop_router()
        out = self.summary(elapsed, self.stage_calls())
        out.update({"http_status": {str(k): v for k, v in sorted(status.items())}, "bad_bodies": bad_bodies[:5],
                    "bodies_with_traceback": sum("Traceback" in b for b in bad_bodies),
                    "replicas": {d: {"pid": p, "start": start.get(d), "end": end.get(d)} for d, p in pids.items()},
                    "server_connections_at_end": conns_end, "concurrent_batches": args.concurrent_batches,
                    "rss_mib_at_tenths_by_replica": {d: tenths(v) for d, v in self.rss_by.items()}})
        return out

    def reset(self) -> None:
        with self.lock:
            self.latencies, self.ended, self.timed_out = [], [], []
            self.rows = self.wrong = self.degraded = self.by_remote = 0
            self.errors = {}
        open(self.calls_log, "w").close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flavour", choices=["sync", "async", "serve"], default="sync",
                    help="route in threads, aroute on one loop, or HTTP requests to the Ray Serve app")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--in-flight", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4, help="inputs per call")
    ap.add_argument("--oip-timeout", type=float, default=1.0, help="the predictor's end-to-end deadline")
    ap.add_argument("--stage-timeout", type=float, default=2.0, help="the Fallback's timeout")
    ap.add_argument("--max-connections", type=int, default=32)
    ap.add_argument("--slow-delay", type=float, default=5.0, help="seconds a 'slow' answer takes")
    ap.add_argument("--concurrent-batches", type=int, default=8,
                    help="serve: merged batches the remote stage's replica runs at once")
    ap.add_argument("--mix", default=MIX)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSON file (default: benchmarks/results/remote-soak-<flavour>-<which>.json)")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    out = ServeSoak(args).serve_run() if args.flavour == "serve" else Soak(args).run()
    which = "oip-deadline" if args.oip_timeout <= args.stage_timeout else "stage-timeout"
    path = Path(args.out or Path(__file__).parent / "results" / f"remote-soak-{args.flavour}-{which}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
