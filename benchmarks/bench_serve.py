"""Benchmark: the routed SST-2 service on Ray Serve under load, against the fallback alone.

Two applications run side by side on one local Ray instance, from `confroute serve` configs:

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

Load (an async httpx client in this process, loopback, ``--per-request`` SST-2 dev sentences per
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
             n: int) -> dict[str, Any]:
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
    }


#: Sentences per request (``--per-request``).
PER_REQUEST = 1


def _batch(texts: list[str], i: int) -> list[str]:
    return [texts[(i * PER_REQUEST + j) % len(texts)] for j in range(PER_REQUEST)]


async def _post(client: Any, url: str, batch: list[str], timeout: float) -> tuple[bool, float]:
    """(answered, share of the request's rows that went past stage 0) for one request."""
    try:
        r = await asyncio.wait_for(client.post(url, json={"inputs": batch}), timeout)
    except Exception:  # noqa: BLE001 - a timeout or a connection error: a failed request
        return False, 0.0
    if r.status_code != 200:
        return False, 0.0
    rows = r.json()["results"]
    return True, float(np.mean([row["stage"] != 0 or row["degraded"] for row in rows]))


async def open_loop(url: str, texts: list[str], rate: float, seconds: float, seed: int, timeout: float,
                    meter: CPUMeter, single_stage: bool) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` per second for ``seconds``; latency from the scheduled arrival."""
    import httpx

    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, size=int(rate * seconds * 2) + 20))
    arrivals = arrivals[arrivals < seconds]
    lat: list[float] = []
    counts: dict[str, float] = {"answered": 0, "routed": 0.0, "failed": 0}
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=timeout + 5, limits=limits) as client:
        cpu0, t0 = meter.total(), time.perf_counter()

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
        wall, cpu = time.perf_counter() - t0, meter.total() - cpu0
    row = _summary(lat, counts["answered"], counts["routed"], counts["failed"], wall, cpu, len(arrivals))
    row["offered_rps"] = rate
    return row


async def closed_loop(url: str, texts: list[str], n_requests: int, concurrency: int, timeout: float,
                      meter: CPUMeter, single_stage: bool) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    counts: dict[str, float] = {"answered": 0, "routed": 0.0, "failed": 0}
    queue = iter(range(n_requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout + 5, limits=limits) as client:
        cpu0, t0 = meter.total(), time.perf_counter()

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
        wall, cpu = time.perf_counter() - t0, meter.total() - cpu0
    row = _summary(lat, counts["answered"], counts["routed"], counts["failed"], wall, cpu, n_requests)
    row["concurrency"] = concurrency
    return row


def _line(service: str, row: dict[str, Any]) -> str:
    what = f"rate {row['offered_rps']:5.1f}" if "offered_rps" in row else f"c={row['concurrency']:3d}"
    return (f"{service:6s} {what}: {row['throughput_rps']:6.1f} req/s  p50 {row['p50_ms']:8.0f} ms  "
            f"p99 {row['p99_ms']:8.0f} ms  max {row['max_ms']:8.0f} ms  routed {row['routed_fraction']:.1%}  "
            f"failed {row['failed']}  cpu {row['cpu_s_per_1000']:.1f} s/1000  "
            f"load {row['load_before'][0]:.2f}->{row['load_after'][0]:.2f}")


def run_pair(kind: str, arg: Any, urls: dict[str, str], texts: list[str], ns: argparse.Namespace, meter: CPUMeter,
             index: int, skip: set[str]) -> dict[str, Any]:
    """One offered rate (or one closed-loop level) on both services, back to back."""
    order = ["routed", "alone"] if index % 2 == 0 else ["alone", "routed"]
    out: dict[str, Any] = {}
    for service in order:
        if service in skip:
            out[service] = None
            continue
        time.sleep(ns.pause)
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
    args.fallback = args.fallback.resolve()
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
        "fallback_via": args.fallback_via, "load_start": os.getloadavg(),
    }
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
        out.append(f"Highest offered rate with p99 <= 1 s and no failures: routed {s['routed']:g} req/s, "
                   f"fallback alone {s['alone']:g} req/s.")
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
    load = f", 1-min load average {min(loads):.0f}-{max(loads):.0f}" if loads else ""
    fig.suptitle(f"SST-2 on Ray Serve, open loop, 2 shared vCPUs{load}, 1 thread per model", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
