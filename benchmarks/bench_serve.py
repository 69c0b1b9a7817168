"""Benchmark: the routed SST-2 service under load, against the fallback alone.

``--engine ray`` (default): two applications run side by side on one local Ray instance, from
`confroute serve` configs (below). ``--engine local``: each service is its own `confroute serve
--engine local` process (one process, no Ray: ``confroute.integrations.serve_local``), started
as a user starts it, the first stage ``--primary`` (for the tables in docs/serving.md the
batch-invariant row-wise int8 MiniLM pruned80, ``benchmarks/make_int8.py``), the fallback alone's
MPNet with ``--alone-threads`` intra-op threads (1, or 2 for equal cores), and before the load a
model-level pass (``--model-costs``: each model's sentences/s on the 872 dev sentences, 1 thread,
sorted batches of 32, its accuracy and the routed fraction at the threshold) that gives the
CPU bound on the routed/alone ratio, ``c_fallback / (c_first + routed * c_fallback)``.

On Ray:

(a) **routed** (``/routed``): MiniLM (pruned 80 %, ONNX Runtime) in its stage deployment; what it
    is not confident about (max_prob < ``--threshold``, default the SST-2 study's pruned80
    threshold 0.98918) goes to the MPNet fallback;
(b) **fallback alone** (``/alone``): the same ingress with the MPNet stage only.

The MPNet fallback is ``--fallback`` (default: the batch-invariant row-wise int8 MPNet,
``.cache/mpnet-sst2-rowwise``, written by ``confroute.export.rowwise_int8`` from the shared model
when missing), run in a Ray Serve stage
deployment (``--fallback-via ray``) or by a real MLServer process over the Open Inference Protocol
(``--fallback-via mlserver``), with dynamic batching up to ``--fallback-batch`` inputs per call
(1 = one sentence per call, how the dynamically quantised MPNet had to be served). Every model
runs with 1 intra-op thread; every stage deployment has 1 replica.

Load (an async aiohttp client in this process (`--client httpx` for httpx), loopback, ``--per-request`` SST-2 dev sentences per
request, default 1):

* **open loop**: Poisson arrivals at each fixed offered rate of ``--rates`` for ``--seconds`` s;
  a request's latency counts from its scheduled arrival (no coordinated omission); a request
  that fails or takes longer than ``--timeout`` s counts as failed (latency = infinity in the
  percentiles). At each rate the two services run back to back (order alternating), so each
  pair shares one window of machine load; a service whose p99 passed 10 s is not offered
  higher rates.
* **closed loop**: ``--closed`` (in-flight:requests pairs), as before.

Reported per run: offered rate, throughput (answered requests/s), p50/p99/max latency, routed
fraction, failed requests, server CPU seconds per 1,000 requests (user+system time of every Ray
and MLServer process this benchmark started, the client excluded), and the 1-minute load
average before and after. The tables give routed/alone ratios.

Usage (needs /work/shared or $CONFROUTE_SHARED)::

    PYTHONPATH=src python benchmarks/bench_serve.py [--rates 5 10 20 30 40 60 80] [--seconds 15]

Writes benchmarks/results/serve.json (``--out``) and docs/img/serving_load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "mlserver"))

SHARED = Path(os.environ.get("CONFROUTE_SHARED", ROOT.parent / "shared")).resolve()
MINILM = SHARED / "models" / "minilm-sst2-pruned80"
ROWWISE = ROOT / ".cache" / "mpnet-sst2-rowwise"
DEV = SHARED / "data" / "sst2" / "dev.tsv"
#: The SST-2 study's oracle threshold for pruned80 -> MPNet (benchmarks/results/sst2_mpnet_pair.json).
STUDY_THRESHOLD = 0.9891769476260598

SMALL = "{ray_actor_options: {num_cpus: 0.25}, max_batch_size: 32, batch_wait_timeout_s: 0.005}"
FALLBACK_LOCAL = """  - name: mpnet
    model: onnx:{fallback}
    threads: 1
    batch_size: {batch}
    deployment: {{ray_actor_options: {{num_cpus: 0.25}}, max_batch_size: {batch}, batch_wait_timeout_s: 0.005,
                 max_ongoing_requests: 256}}
"""
FALLBACK_REMOTE = """  - name: mpnet
    url: {url}
    model_name: mpnet
    timeout: 60
    batch_size: {batch}
    deployment: {{ray_actor_options: {{num_cpus: 0.25}}, max_batch_size: {batch}, batch_wait_timeout_s: 0.005,
                 max_ongoing_requests: 256}}
"""
ROUTED = """
name: routed
ingress: {{ray_actor_options: {{num_cpus: 0.25}}, max_ongoing_requests: 1024}}
stages:
  - name: minilm
    model: {minilm}
    threads: 1
    deployment: {{ray_actor_options: {{num_cpus: 0.25}}, max_batch_size: 32, batch_wait_timeout_s: 0.005,
                 max_ongoing_requests: 256}}
{fallback_stage}
thresholds: [{threshold}]
cost: {{per_sample: [1, 10]}}
"""
ALONE = """
name: alone
ingress: {{ray_actor_options: {{num_cpus: 0.25}}, max_ongoing_requests: 1024}}
stages:
{fallback_stage}
"""
#: ``--engine local``: the same services, each a `confroute serve --engine local` process.
LOCAL_ROUTED = """
name: routed
engine: local
http: {{host: 127.0.0.1, port: {port}}}
stages:
  - {{name: minilm, model: "{minilm}", threads: 1, deployment: {{max_batch_size: 32, batch_wait_timeout_s: 0.005}}}}
{fallback_stage}
thresholds: [{threshold}]
cost: {{per_sample: [1, 10]}}
"""
LOCAL_ALONE = """
name: alone
engine: local
http: {{host: 127.0.0.1, port: {port}}}
stages:
{fallback_stage}
"""
LOCAL_FALLBACK = """  - {{name: mpnet, model: "onnx:{fallback}", threads: {threads}, batch_size: {batch},
     deployment: {{max_batch_size: {batch}, batch_wait_timeout_s: 0.005}}}}"""
LOCAL_FALLBACK_REMOTE = """  - {{name: mpnet, url: "{url}", model_name: mpnet, timeout: 60, batch_size: {batch},
     deployment: {{max_batch_size: {batch}, batch_wait_timeout_s: 0.005, max_concurrent_batches: 4}}}}"""


class CPUMeter:
    """User+system CPU seconds of this process's descendants (the servers), the client excluded."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.seen: dict[int, float] = {}

    def total(self) -> float:
        import psutil

        total = 0.0
        for p in self.me.children(recursive=True):
            try:
                t = p.cpu_times()
                self.seen[p.pid] = t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        # A process that exited keeps the last time seen (none should exit during a run).
        return total + sum(self.seen.values())


def _summary(lat: list[float], answered: float, routed: float, failed: float, wall: float, cpu: float,
             n: int, client_cpu: float = float("nan")) -> dict[str, Any]:
    arr = np.array(lat + [np.inf] * failed) if (lat or failed) else np.array([np.inf])
    finite = np.array(lat) if lat else np.array([np.nan])
    return {
        "requests": n, "answered": answered, "failed": failed, "seconds": round(wall, 2),
        "throughput_rps": answered / wall if wall > 0 else 0.0,
        "sentences_per_s": PER_REQUEST * answered / wall if wall > 0 else 0.0, "per_request": PER_REQUEST,
        # "higher": no interpolation, so failed requests (infinite latency) give inf, not nan.
        "p50_ms": float(np.percentile(arr, 50, method="higher") * 1000),
        "p99_ms": float(np.percentile(arr, 99, method="higher") * 1000),
        "max_ms": float(np.max(arr) * 1000), "max_answered_ms": float(np.nanmax(finite) * 1000),
        "routed_fraction": routed / max(answered, 1),
        "cpu_s_per_1000": 1000 * cpu / max(answered, 1),
        # the load generator's own CPU (this process): it shares the machine with the servers
        "client_cpu_s_per_1000": 1000 * client_cpu / max(answered, 1),
    }


#: Sentences per request (``--per-request``).
PER_REQUEST = 1


def _batch(texts: list[str], i: int) -> list[str]:
    return [texts[(i * PER_REQUEST + j) % len(texts)] for j in range(PER_REQUEST)]


class _Client:
    """The load generator's HTTP client: aiohttp (default; several times less CPU per request than
    httpx, and the client shares the 2 vCPUs with the servers) or httpx (``--client httpx``)."""

    kind = "aiohttp"

    def __init__(self, timeout: float, connections: int) -> None:
        self.timeout, self.connections = timeout, connections

    async def __aenter__(self) -> "_Client":
        if self.kind == "aiohttp":
            import aiohttp

            self.session: Any = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.connections),
                                                      timeout=aiohttp.ClientTimeout(total=self.timeout + 5))
        else:
            import httpx

            limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=min(self.connections, 256))
            self.session = httpx.AsyncClient(timeout=self.timeout + 5, limits=limits)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await (self.session.close() if self.kind == "aiohttp" else self.session.aclose())

    async def post_json(self, url: str, body: Any) -> tuple[int, Any]:
        if self.kind == "aiohttp":
            async with self.session.post(url, json=body) as r:
                return r.status, (await r.json() if r.status == 200 else None)
        r = await self.session.post(url, json=body)
        return r.status_code, (r.json() if r.status_code == 200 else None)


async def _post(client: _Client, url: str, batch: list[str], timeout: float) -> tuple[bool, float]:
    """(answered, share of the request's rows that went past stage 0) for one request."""
    try:
        status, body = await asyncio.wait_for(client.post_json(url, {"inputs": batch}), timeout)
    except Exception:  # noqa: BLE001 - a timeout or a connection error: a failed request
        return False, 0.0
    if status != 200:
        return False, 0.0
    rows = body["results"]
    return True, float(np.mean([row["stage"] != 0 or row["degraded"] for row in rows]))


async def open_loop(url: str, texts: list[str], rate: float, seconds: float, seed: int, timeout: float,
                    meter: CPUMeter, single_stage: bool) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` per second for ``seconds``; latency from the scheduled arrival."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, size=int(rate * seconds * 2) + 20))
    arrivals = arrivals[arrivals < seconds]
    lat: list[float] = []
    counts: dict[str, float] = {"answered": 0, "routed": 0.0, "failed": 0}
    async with _Client(timeout, 2000) as client:
        cpu0, t0, own0 = meter.total(), time.perf_counter(), time.process_time()

        async def one(i: int, at: float) -> None:
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            ok, routed = await _post(client, url, _batch(texts, seed * 7919 + i), timeout)
            if ok:
                lat.append(time.perf_counter() - (t0 + at))
                counts["answered"] += 1
                counts["routed"] += routed or single_stage
            else:
                counts["failed"] += 1

        await asyncio.gather(*(one(i, float(a)) for i, a in enumerate(arrivals)))
        wall, cpu, own = time.perf_counter() - t0, meter.total() - cpu0, time.process_time() - own0
    row = _summary(lat, counts["answered"], counts["routed"], counts["failed"], wall, cpu, len(arrivals), own)
    row["offered_rps"] = rate
    return row


async def closed_loop(url: str, texts: list[str], n_requests: int, concurrency: int, timeout: float,
                      meter: CPUMeter, single_stage: bool) -> dict[str, Any]:
    lat: list[float] = []
    counts: dict[str, float] = {"answered": 0, "routed": 0.0, "failed": 0}
    queue = iter(range(n_requests))
    async with _Client(timeout, concurrency) as client:
        cpu0, t0, own0 = meter.total(), time.perf_counter(), time.process_time()

        async def worker() -> None:
            for i in queue:
                t = time.perf_counter()
                ok, routed = await _post(client, url, _batch(texts, i), timeout)
                if ok:
                    lat.append(time.perf_counter() - t)
                    counts["answered"] += 1
                    counts["routed"] += routed or single_stage
                else:
                    counts["failed"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu, own = time.perf_counter() - t0, meter.total() - cpu0, time.process_time() - own0
    row = _summary(lat, counts["answered"], counts["routed"], counts["failed"], wall, cpu, n_requests, own)
    row["concurrency"] = concurrency
    return row


def _line(service: str, row: dict[str, Any]) -> str:
    what = f"rate {row['offered_rps']:5.1f}" if "offered_rps" in row else f"c={row['concurrency']:3d}"
    return (f"{service:6s} {what}: {row['throughput_rps']:6.1f} req/s  p50 {row['p50_ms']:8.0f} ms  "
            f"p99 {row['p99_ms']:8.0f} ms  max {row['max_ms']:8.0f} ms  routed {row['routed_fraction']:.1%}  "
            f"failed {row['failed']}  cpu {row['cpu_s_per_1000']:.1f} s/1000 (client "
            f"{row.get('client_cpu_s_per_1000', float('nan')):.1f})  "
            f"load {row['load_before'][0]:.2f}->{row['load_after'][0]:.2f}")


def quiesce(meter: CPUMeter, rest: float, limit_s: float = 120.0) -> float:
    """Rest ``rest`` s, then wait until the servers are idle: a server keeps working through the
    backlog of an overloaded run after its clients gave up, and that would slow (and bill CPU to)
    the next run. Idle: under half a core in a 0.5 s window (a drain takes a whole core; Ray's
    own processes idle well below). Returns the seconds waited after the rest."""
    time.sleep(rest)
    t_start = time.monotonic()
    while time.monotonic() - t_start < limit_s:
        before = meter.total()
        time.sleep(0.5)
        if meter.total() - before < 0.25:
            break
    return time.monotonic() - t_start


def run_pair(kind: str, arg: Any, urls: dict[str, str], texts: list[str], ns: argparse.Namespace, meter: CPUMeter,
             index: int, skip: set[str]) -> dict[str, Any]:
    """One offered rate (or one closed-loop level) on both services, back to back."""
    order = ["routed", "alone"] if index % 2 == 0 else ["alone", "routed"]
    out: dict[str, Any] = {}
    for service in order:
        if service in skip:
            out[service] = None
            continue
        quiesce(meter, ns.pause)
        before = os.getloadavg()
        if kind == "open":
            row = asyncio.run(open_loop(urls[service], texts, arg, ns.seconds, index, ns.timeout, meter,
                                        service == "alone"))
        else:
            conc, n = arg
            row = asyncio.run(closed_loop(urls[service], texts, n, conc, ns.timeout, meter, service == "alone"))
        row["load_before"], row["load_after"] = before, os.getloadavg()
        print(_line(service, row), flush=True)
        out[service] = row
        if kind == "open" and (row["p99_ms"] > 10_000 or row["failed"] > 0.05 * row["requests"]):
            skip.add(service)
    r, a = out.get("routed"), out.get("alone")
    if r and a:
        out["ratio_throughput"] = r["throughput_rps"] / max(a["throughput_rps"], 1e-9)
        out["ratio_p99"] = r["p99_ms"] / a["p99_ms"] if np.isfinite(a["p99_ms"]) and a["p99_ms"] > 0 else None
        out["ratio_cpu_per_request"] = r["cpu_s_per_1000"] / max(a["cpu_s_per_1000"], 1e-9)
    return out


def sustained(rows: list[dict[str, Any]], service: str, p99_ms: float = 1000.0) -> float:
    """Highest offered rate at which ``service`` answered with p99 <= ``p99_ms`` and no failures."""
    ok = [r["rate"] for r in rows if r.get(service) and r[service]["p99_ms"] <= p99_ms and not r[service]["failed"]]
    return max(ok) if ok else 0.0


def _load_phases(urls: dict[str, str], texts: list[str], args: argparse.Namespace, meter: CPUMeter,
                 results: dict[str, Any]) -> None:
    """The open-loop rates, then the closed-loop levels, each pairing the two services."""
    open_rows: list[dict[str, Any]] = []
    skip: set[str] = set()
    for i, rate in enumerate(args.rates):
        pair = run_pair("open", rate, urls, texts, args, meter, i, skip)
        pair["rate"] = rate
        open_rows.append(pair)
        if len(skip) == 2:
            break
    results["open_loop"] = open_rows
    closed_rows = []
    for i, level in enumerate(args.closed):
        conc, n = (int(x) for x in level.split(":"))
        pair = run_pair("closed", (conc, n), urls, texts, args, meter, i, set())
        pair["concurrency"] = conc
        closed_rows.append(pair)
    results["closed_loop"] = closed_rows
    results["sustained_rps_at_p99_1s"] = {s: sustained(open_rows, s) for s in ("routed", "alone")}
    results["load_end"] = os.getloadavg()
    print("sustained at p99 <= 1 s:", results["sustained_rps_at_p99_1s"], flush=True)


def model_costs(args: argparse.Namespace) -> dict[str, Any]:
    """Each model alone, 1 intra-op thread, the 872 dev sentences in sorted batches of 32 (median
    of 3 passes): sentences/s, accuracy, the first stage's routed fraction at the threshold, and
    the CPU bound on the routed/alone ratio with no serving cost at all."""
    from confroute.core.decision import accepts
    from confroute.integrations.io import load_texts
    from confroute.predictors import ONNXRuntimePredictor

    texts, labels = load_texts(DEV)
    labels = np.asarray(labels)
    out: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    for role, spec in (("first", args.primary), ("fallback", f"onnx:{args.fallback}")):
        backend, _, path = spec.rpartition(":")
        if backend != "onnx":
            return {"skipped": f"model costs are timed for onnx: models only, not {spec}"}
        predictor = ONNXRuntimePredictor(path, num_threads=1, batch_size=32, sort_by_length=True)
        predictor.predict(list(texts[:64]))  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            probs = np.asarray(predictor.predict(list(texts)).probs)
            times.append(time.perf_counter() - t0)
        conf = probs.max(axis=1)
        preds[role], preds[role + "_conf"] = probs.argmax(axis=1), conf
        out[role] = {"model": spec, "sentences_per_s": len(texts) / float(np.median(times)),
                     "accuracy": float((probs.argmax(axis=1) == labels).mean())}
        if role == "first":
            out[role]["routed_fraction"] = float((~accepts(conf, None, args.threshold)).mean())
        print(f"{role}: {out[role]}", flush=True)
    routed = ~accepts(preds["first_conf"], None, args.threshold)  # the router's one accept rule
    out["system_accuracy"] = float((np.where(routed, preds["fallback"], preds["first"]) == labels).mean())
    print(f"routed system accuracy at {args.threshold}: {out['system_accuracy']:.4f}", flush=True)
    c1, cf = 1 / out["first"]["sentences_per_s"], 1 / out["fallback"]["sentences_per_s"]
    out["cpu_bound_ratio"] = cf / (c1 + out["first"]["routed_fraction"] * cf)
    return out


def run_local(args: argparse.Namespace, texts: list[str], results: dict[str, Any]) -> None:
    """``--engine local``: each service a `confroute serve --engine local` process, as a user runs it."""
    import signal
    import subprocess

    import httpx

    from launch import free_port

    if args.model_costs:
        results["models"] = model_costs(args)
    procs, urls, meter = [], {}, CPUMeter()
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    mlserver = None
    try:
        if args.fallback_via == "mlserver":  # one MLServer process holds the MPNet of both services
            from launch import MLServerProcess

            mlserver = MLServerProcess({"mpnet": args.fallback}, num_threads=1, batch_size=args.fallback_batch).start()
        for service, template in (("routed", LOCAL_ROUTED), ("alone", LOCAL_ALONE)):
            port = free_port()
            threads = args.alone_threads if service == "alone" else 1
            stage = (LOCAL_FALLBACK_REMOTE.format(url=mlserver.url, batch=args.fallback_batch) if mlserver else
                     LOCAL_FALLBACK.format(fallback=args.fallback, threads=threads, batch=args.fallback_batch))
            (folder / f"{service}.yaml").write_text(template.format(
                port=port, minilm=args.primary, fallback_stage=stage, threshold=args.threshold))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "confroute", "serve", str(folder / f"{service}.yaml")],
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, start_new_session=True,
                stdout=subprocess.DEVNULL))
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or procs[-1].poll() is not None:
                    raise RuntimeError(f"the {service} service did not start (see its stderr above)")
                time.sleep(0.2)
            urls[service] = f"http://127.0.0.1:{port}/route"
            asyncio.run(closed_loop(urls[service], texts[::-1], 40, 8, args.timeout, meter, False))  # warm-up
        _load_phases(urls, texts, args, meter, results)
    finally:
        for proc in procs:
            if proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if mlserver is not None:
            mlserver.close()
    Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    plot(results, Path(args.plot))


def main() -> None:  # long: argument parsing, server start-up and the two load phases in one place
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[5, 10, 20, 30, 40, 60, 80])
    ap.add_argument("--seconds", type=float, default=15.0, help="duration of each open-loop run")
    ap.add_argument("--closed", nargs="*", default=["1:100", "8:400", "32:800"],
                    help="closed-loop levels IN_FLIGHT:REQUESTS (default 1:100 8:400 32:800)")
    ap.add_argument("--threshold", type=float, default=STUDY_THRESHOLD)
    ap.add_argument("--fallback", type=Path, default=ROWWISE)
    ap.add_argument("--primary", default=f"onnx:{MINILM}",
                    help="the first stage's model spec (default onnx:SHARED/models/minilm-sst2-pruned80)")
    ap.add_argument("--per-request", type=int, default=1, help="SST-2 sentences per request (default 1)")
    ap.add_argument("--fallback-batch", type=int, default=32)
    ap.add_argument("--fallback-via", choices=["ray", "mlserver"], default="ray")
    ap.add_argument("--engine", choices=["ray", "local"], default="ray",
                    help="ray: both services on one Ray Serve instance; local: each its own "
                    "`confroute serve --engine local` process (no Ray)")
    ap.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp",
                    help="the load generator's HTTP client (default aiohttp: the cheaper one)")
    ap.add_argument("--model-costs", action=argparse.BooleanOptionalAction, default=True,
                    help="--engine local: time each model alone first (default on)")
    ap.add_argument("--alone-threads", type=int, default=1,
                    help="intra-op threads of the fallback-alone service's MPNet (--engine local; default 1)")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--pause", type=float, default=2.0, help="seconds of rest before each run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "serving_load.png"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from --out, run nothing")
    ap.add_argument("--table", action="store_true", help="print the markdown tables of --out, run nothing")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(Path(args.out).read_text()), Path(args.plot))
        return
    if args.table:
        print(tables(json.loads(Path(args.out).read_text())))
        return

    import ray
    import yaml
    from ray import serve

    from confroute.cli.serve import app_from_config, check_config
    from launch import MLServerProcess, free_port

    global PER_REQUEST
    PER_REQUEST = args.per_request
    _Client.kind = args.client
    args.fallback = args.fallback.resolve()
    backend, _, path = args.primary.rpartition(":")
    args.primary = f"{backend}:{Path(path).resolve()}" if backend else str(Path(path).resolve())
    if args.fallback == ROWWISE.resolve() and not (ROWWISE / "model.onnx").is_file():
        from confroute.export import rowwise_int8

        rowwise_int8(SHARED / "models" / "mpnet-sst2-int8", ROWWISE)
    texts = [line.split("\t")[0] for line in DEV.read_text(encoding="utf-8").splitlines()[1:]]
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "note": "2 vCPUs shared with other agents' jobs; Ray started with num_cpus=2; the load "
                            "generator runs on the same 2 vCPUs"},
        "threads": "1 intra-op thread per model (ONNX Runtime in each stage replica, or in MLServer)",
        "threshold": args.threshold, "per_request": args.per_request, "primary": args.primary,
        "fallback": str(args.fallback), "fallback_batch": args.fallback_batch,
        "fallback_via": args.fallback_via, "client": args.client, "load_start": os.getloadavg(),
    }
    results["engine"], results["alone_threads"] = args.engine, args.alone_threads
    if args.engine == "local":
        results["threads"] = (f"1 intra-op thread per model in the routed service (MiniLM, MPNet); "
                              f"{args.alone_threads} for the fallback alone's MPNet; one process per service")
        results["machine"]["note"] = ("2 vCPUs; each service its own process (no Ray); the load generator runs "
                                      "on the same 2 vCPUs")
        run_local(args, texts, results)
        return
    mlserver = None
    http_port = free_port()
    meter = CPUMeter()
    try:
        if args.fallback_via == "mlserver":
            mlserver = MLServerProcess({"mpnet": args.fallback}, num_threads=1, batch_size=args.fallback_batch).start()
            stage = FALLBACK_REMOTE.format(url=mlserver.url, batch=args.fallback_batch)
        else:
            stage = FALLBACK_LOCAL.format(fallback=args.fallback, batch=args.fallback_batch)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        base = f"http://127.0.0.1:{http_port}"
        urls = {}
        for service, template in (("routed", ROUTED), ("alone", ALONE)):
            doc = template.format(minilm=args.primary, threshold=args.threshold, fallback_stage=stage)
            cfg = check_config(yaml.safe_load(doc), base=tempfile.gettempdir())
            serve.run(app_from_config(cfg), name=service, route_prefix=f"/{service}")
            urls[service] = f"{base}/{service}/route"
            asyncio.run(closed_loop(urls[service], texts[::-1], 40, 8, args.timeout, meter, False))  # warm-up
        _load_phases(urls, texts, args, meter, results)
        for service in ("routed", "alone"):
            serve.delete(service)
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        if mlserver is not None:
            mlserver.close()
    Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    plot(results, Path(args.plot))


def _ms(x: float) -> str:
    return "inf" if not np.isfinite(x) else f"{x:.0f}"


def tables(results: dict[str, Any]) -> str:
    """The open-loop and closed-loop tables (markdown), with routed/alone ratios."""
    head = ("| {k} | service | throughput (req/s) | p50 (ms) | p99 (ms) | max (ms) | routed | failed | "
            "CPU s / 1000 req | load before -> after |\n|---|---|---|---|---|---|---|---|---|---|\n")
    out = []
    for key, label, rows in (("rate", "offered (req/s)", results.get("open_loop", [])),
                             ("concurrency", "in flight", results.get("closed_loop", []))):
        text = head.format(k=label)
        for r in rows:
            for s in ("routed", "alone"):
                row = r.get(s)
                if not row:
                    text += f"| {r[key]:g} | {s} | not run (saturated at a lower rate) | | | | | | | |\n"
                    continue
                text += (f"| {r[key]:g} | {'routed' if s == 'routed' else 'fallback alone'} | "
                         f"{row['throughput_rps']:.1f} | {_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} | "
                         f"{_ms(row['max_ms'])} | {row['routed_fraction']:.1%} | {row['failed']}/{row['requests']} | "
                         f"{row['cpu_s_per_1000']:.0f} | {row['load_before'][0]:.1f} -> {row['load_after'][0]:.1f} |\n")
            if r.get("ratio_throughput") is not None:
                p99 = r.get("ratio_p99")
                text += (f"| {r[key]:g} | **routed / alone** | **{r['ratio_throughput']:.2f}x** | | "
                         f"{'' if p99 is None else f'{p99:.2f}x'} | | | | {r['ratio_cpu_per_request']:.2f}x | |\n")
        out.append(text)
    out.append(f"{results.get('per_request', 1)} SST-2 sentence(s) per request; threshold {results.get('threshold')}.")
    s = results.get("sustained_rps_at_p99_1s")
    if s:
        ratio = f" (**{s['routed'] / s['alone']:.2f}x**)" if s.get("alone") else ""
        out.append(f"Highest offered rate with p99 <= 1 s and no failures: routed {s['routed']:g} req/s, "
                   f"fallback alone {s['alone']:g} req/s{ratio}.")
    m = results.get("models") or {}
    if "first" in m:
        f, b = m["first"], m["fallback"]
        out.append(f"Models alone (1 thread, 872 dev sentences, sorted batches of 32): first stage "
                   f"{f['sentences_per_s']:.0f} sentences/s, accuracy {f['accuracy']:.4f}, "
                   f"{f['routed_fraction']:.1%} below the threshold; fallback {b['sentences_per_s']:.0f} "
                   f"sentences/s, accuracy {b['accuracy']:.4f}; routed system accuracy "
                   f"{m.get('system_accuracy', float('nan')):.4f}; CPU bound on routed/alone with no serving "
                   f"cost: {m['cpu_bound_ratio']:.2f}x.")
    return "\n".join(out)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    rows = results.get("open_loop", [])
    for service, color in (("routed", "tab:blue"), ("alone", "tab:orange")):
        pts = [(r["rate"], r[service]) for r in rows if r.get(service)]
        if not pts:
            continue
        x = [p[0] for p in pts]
        label = "routed" if service == "routed" else "fallback alone"
        axes[0].plot(x, [p[1]["throughput_rps"] for p in pts], marker="o", color=color, label=label)
        axes[1].plot(x, [min(p[1]["p50_ms"], 6e4) for p in pts], marker="o", color=color, label=f"{label} p50")
        axes[1].plot(x, [min(p[1]["p99_ms"], 6e4) for p in pts], marker="x", linestyle="--", color=color,
                     label=f"{label} p99")
    axes[1].axhline(1000, color="grey", linewidth=0.8)
    for ax in axes:
        ax.set_xlabel("offered rate (requests/s, Poisson)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("answered requests / s")
    axes[1].set_ylabel("latency (ms)")
    axes[1].set_yscale("log")
    loads = [r[s]["load_before"][0] for r in rows for s in ("routed", "alone") if r.get(s)]
    load = f", 1-min load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    where = "one process each (engine local)" if results.get("engine") == "local" else "Ray Serve"
    threads = ("1 thread per model" if results.get("alone_threads", 1) == 1
               else f"1 thread per model, {results['alone_threads']} for the fallback alone")
    fig.suptitle(f"SST-2 on {where}, open loop, threshold {results.get('threshold', 0):.4g}, 2 shared vCPUs{load}, "
                 f"{threads}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
