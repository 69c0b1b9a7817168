"""Benchmark: the routed SST-2 service on Ray Serve under load, against the fallback alone.

Two services are started in turn on one local Ray instance, from `confroute serve` configs:

(a) **routed**: MiniLM (pruned 80 %, ONNX Runtime) in its stage deployment; what it is not
    confident about (max_prob < threshold) goes to MPNet int8 served by a real MLServer process
    over the Open Inference Protocol;
(b) **fallback alone**: the same ingress with one stage, the same MLServer MPNet.

An async httpx client sends one SST-2 dev sentence per request (``POST /route``), with 1, 8 and 32
requests in flight, a bounded number of requests per level (after a warm-up), loopback only.
Measured per level: throughput (requests/s), p50 and p99 latency, routed fraction, failed
requests. Every model runs with 1 intra-op thread; each stage deployment has 1 replica
(``num_cpus`` 0.5) and dynamic batching up to 32 inputs.

Usage (needs /work/shared or $CONFROUTE_SHARED and `bash tools/mlserver_venv.sh`)::

    python benchmarks/bench_serve.py [--requests 100 400 800] [--threshold 0.9]

Writes benchmarks/results/serve.json and docs/img/serving_load.png. The machine is shared:
numbers are noisy, compare the two services within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "mlserver"))
from launch import MLServerProcess  # noqa: E402

SHARED = Path(os.environ.get("CONFROUTE_SHARED", ROOT.parent / "shared")).resolve()
MINILM = SHARED / "models" / "minilm-sst2-pruned80"
MPNET = SHARED / "models" / "mpnet-sst2-int8"
DEV = SHARED / "data" / "sst2" / "dev.tsv"

ROUTED = """
name: {name}
stages:
  - name: minilm
    model: onnx:{minilm}
    threads: 1
    deployment: {{ray_actor_options: {{num_cpus: 0.5}}, max_batch_size: 32, batch_wait_timeout_s: 0.005}}
  - name: mpnet
    url: {url}
    model_name: mpnet
    timeout: 60
    fallback: {{on_error: keep_previous, circuit_breaker: {{failure_threshold: 5, reset_after: 5}}}}
    deployment: {{ray_actor_options: {{num_cpus: 0.5}}, max_batch_size: 32, batch_wait_timeout_s: 0.005}}
thresholds: [{threshold}]
cost: {{per_sample: [1, 10]}}
"""

ALONE = """
name: {name}
stages:
  - name: mpnet
    url: {url}
    model_name: mpnet
    timeout: 60
    deployment: {{ray_actor_options: {{num_cpus: 0.5}}, max_batch_size: 32, batch_wait_timeout_s: 0.005}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(url: str, texts: list[str], n_requests: int, concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    routed = failed = 0
    queue = iter(range(n_requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker() -> None:
            nonlocal routed, failed
            for i in queue:
                t0 = time.perf_counter()
                try:
                    r = await client.post(url + "/route", json={"inputs": [texts[i % len(texts)]]})
                    ok = r.status_code == 200
                except Exception:  # noqa: BLE001 - counted as a failed request
                    ok = False
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    failed += 1
                    continue
                row = r.json()["results"][0]
                routed += row["stage"] != 0 or row["degraded"]

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies)
    return {
        "load_average_1min_after": os.getloadavg()[0],
        "concurrency": concurrency,
        "requests": n_requests,
        "failed": failed,
        "seconds": wall,
        "throughput_rps": n_requests / wall,
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
        "routed_fraction": routed / max(n_requests - failed, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, nargs=3, default=[100, 400, 800],
                    help="requests at concurrency 1, 8 and 32 (default 100 400 800)")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "serving_load.png"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from --out, run nothing")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(Path(args.out).read_text()), Path(args.plot))
        return

    import ray
    from ray import serve

    from confroute.cli.serve import app_from_config, check_config

    import yaml

    texts = [line.split("\t")[0] for line in DEV.read_text(encoding="utf-8").splitlines()[1:]]
    levels = list(zip([1, 8, 32], args.requests))
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "note": "2 vCPUs shared with other jobs; Ray started with num_cpus=2"},
        "threads": "1 intra-op thread per model (ONNX Runtime in the stage replica and in MLServer)",
        "threshold": args.threshold,
        "services": {},
    }
    fallback = MLServerProcess({"mpnet": MPNET}, num_threads=1, batch_size=32).start()
    http_port = free_port()
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        url = f"http://127.0.0.1:{http_port}"
        for service, template in (("routed", ROUTED), ("fallback_alone", ALONE)):
            cfg = check_config(yaml.safe_load(template.format(
                name=service, minilm=MINILM, url=fallback.url, threshold=args.threshold)), base=tempfile.gettempdir())
            serve.run(app_from_config(cfg), name=service, route_prefix="/")
            asyncio.run(load(url, texts[::-1], 40, 8))  # warm-up (other sentences)
            rows = []
            for concurrency, n in levels:
                row = asyncio.run(load(url, texts, n, concurrency))
                rows.append(row)
                print(f"{service:15s} c={concurrency:2d} {row['throughput_rps']:7.1f} req/s  "
                      f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
                      f"routed {row['routed_fraction']:.1%}  failed {row['failed']}  "
                      f"load avg {row['load_average_1min_after']:.1f}", flush=True)
            results["services"][service] = rows
            serve.delete(service)
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        fallback.close()
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    plot(results, Path(args.plot))


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for (service, rows), color in zip(results["services"].items(), ("tab:blue", "tab:orange")):
        c, label = [r["concurrency"] for r in rows], service.replace("_", " ")
        axes[0].plot(c, [r["throughput_rps"] for r in rows], marker="o", color=color, label=label)
        axes[1].plot(c, [r["p50_ms"] for r in rows], marker="o", color=color, label=f"{label} p50")
        axes[1].plot(c, [r["p99_ms"] for r in rows], marker="x", linestyle="--", color=color, label=f"{label} p99")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 8, 32], ["1", "8", "32"])
        ax.set_xlabel("requests in flight (1 sentence each)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("requests / s")
    axes[1].set_ylabel("latency (ms)")
    axes[1].set_yscale("log")
    fig.suptitle("SST-2 on Ray Serve, 2 shared vCPUs, 1 thread per model", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
