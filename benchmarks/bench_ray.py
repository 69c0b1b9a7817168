"""Benchmark: route one million rows through a cascade on a local Ray instance.

The stages are cheap mock models (a logistic function of three numeric features), so what is
measured is the cost of the Ray path itself: moving rows through ``map_batches`` actor pools,
materialising each stage's output, filtering the deferred rows, and the union at the end.
The rows are generated inside Ray (``ray.data.range`` + ``map_batches``), not on the driver,
and the output is consumed as a stream (``iter_batches``), as a job writing Parquet would.

Each run starts a fresh local Ray instance. Measured per run: wall time of route + consume
(Ray start-up reported apart), rows per second, peak driver RSS, peak total RSS of Ray's worker
processes, and the object store's high-water mark (shared memory in /dev/shm), sampled every
0.25 s. For comparison, the same router's in-memory ``route`` on the same rows in one process.

Usage::

    nice -n 10 python benchmarks/bench_ray.py [--rows 100000 300000 1000000] [--num-cpus 2]

Prints a table and writes benchmarks/results/ray.json. The numbers are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from confroute import Cascade, CallablePredictor, CostModel, ThresholdRouter

CLASSES = ("neg", "pos")


def _logistic(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    p = 1.0 / (1.0 + np.exp(-(np.asarray(X) @ w)))
    return np.column_stack([1 - p, p])


def small(X):
    return _logistic(X, np.array([1.0, 0.5, 0.0]))


def medium(X):
    return _logistic(X, np.array([2.0, 1.0, 0.2]))


def large(X):
    return _logistic(X, np.array([4.0, 2.0, 0.3]))


def make_router(n_stages: int) -> Cascade:
    if n_stages == 2:
        return ThresholdRouter(
            CallablePredictor(small, classes=CLASSES, name="small"),
            CallablePredictor(large, classes=CLASSES, name="large"),
            threshold=0.8,
            cost_model=CostModel.per_sample([0.001, 0.005]),
            names=("small", "large"),
        )
    return Cascade(
        [CallablePredictor(small, classes=CLASSES), CallablePredictor(medium, classes=CLASSES),
         CallablePredictor(large, classes=CLASSES)],
        thresholds=[0.8, 0.9],
        cost_model=CostModel.per_sample([0.001, 0.002, 0.005]),
        names=("small", "medium", "large"),
    )


def add_features(table: Any) -> Any:
    import pyarrow as pa

    ids = table.column("id").to_numpy()
    rng = np.random.default_rng(int(ids[0]) if len(ids) else 0)
    X = rng.normal(size=(len(ids), 3))
    return table.append_column("f0", pa.array(X[:, 0])).append_column("f1", pa.array(X[:, 1])) \
        .append_column("f2", pa.array(X[:, 2]))


# -- memory sampling --------------------------------------------------------------------------------


def _rss_kib(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _ray_worker_pids() -> list[str]:
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read(200)
        except OSError:
            continue
        if cmd.startswith(b"ray::") or b"default_worker.py" in cmd:
            pids.append(pid)
    return pids


def _shm_used() -> int:
    # Ray's object store lives in shared memory (/dev/shm); pages it has touched stay counted
    # while Ray runs, so the difference from a baseline is the store's high-water mark.
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class Sampler:
    """Peak driver RSS, peak total RSS of Ray workers and object-store high-water mark."""

    def __init__(self, interval: float = 0.25, shm_baseline: int | None = None) -> None:
        self.interval = interval
        self.driver = self.workers = self.store = 0
        self.shm_baseline = _shm_used() if shm_baseline is None else shm_baseline
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.driver = max(self.driver, _rss_kib("self") * 1024)
            self.workers = max(self.workers, sum(_rss_kib(p) for p in _ray_worker_pids()) * 1024)
            self.store = max(self.store, _shm_used() - self.shm_baseline)
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# -- runs -------------------------------------------------------------------------------------------


def run_ray(n: int, n_stages: int, num_cpus: int, batch_size: int, concurrency: int) -> dict[str, Any]:
    """One run on a fresh local Ray instance (so memory peaks are per run); start-up included."""
    import ray

    from confroute.integrations.ray import route_dataset

    router = make_router(n_stages)
    counts = np.zeros(n_stages + 1, dtype=np.int64)
    total_cost = 0.0
    rows = 0
    with Sampler() as mem:
        t0 = time.perf_counter()
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        t_init = time.perf_counter() - t0
        try:
            ds = ray.data.range(n, override_num_blocks=max(4, n // 50_000)).map_batches(
                add_features, batch_format="pyarrow", batch_size=None
            )
            t1 = time.perf_counter()
            out = route_dataset(ds, router, feature_columns=["f0", "f1", "f2"], batch_size=batch_size,
                                concurrency=concurrency)
            t_eager = time.perf_counter() - t1
            for batch in out.iter_batches(batch_format="numpy", batch_size=65536):
                rows += len(batch["stage"])
                counts += np.bincount(batch["stage"] + 1, minlength=n_stages + 1)
                total_cost += float(batch["cost"].sum())
            t_route = time.perf_counter() - t1
        finally:
            ray.shutdown()
    assert rows == n, f"lost rows: {rows} != {n}"
    return {
        "engine": "ray", "rows": n, "stages": n_stages, "num_cpus": num_cpus, "batch_size": batch_size,
        "concurrency": concurrency, "ray_init_s": round(t_init, 2), "wall_s": round(t_route, 3),
        "eager_stages_s": round(t_eager, 3), "rows_per_s": round(n / t_route),
        "answered_by_stage": counts[1:].tolist(), "total_cost": round(total_cost, 6),
        "peak_driver_rss_mib": round(mem.driver / 2**20, 1),
        "peak_workers_rss_mib": round(mem.workers / 2**20, 1),
        "peak_object_store_mib": round(mem.store / 2**20, 1),
    }


def run_memory(n: int, n_stages: int) -> dict[str, Any]:
    router = make_router(n_stages)
    X = np.random.default_rng(0).normal(size=(n, 3))
    with Sampler() as mem:
        t0 = time.perf_counter()
        result = router.route(X)
        wall = time.perf_counter() - t0
    return {
        "engine": "in-memory route()", "rows": n, "stages": n_stages, "wall_s": round(wall, 3),
        "rows_per_s": round(n / wall),
        "answered_by_stage": [int((result.stage == s).sum()) for s in range(n_stages)],
        "total_cost": round(float(result.total_cost or 0.0), 6),
        "peak_driver_rss_mib": round(mem.driver / 2**20, 1),
    }


def fit_linear(runs: list[dict[str, Any]]) -> dict[str, float] | None:
    """wall ≈ fixed + per_row × rows over the two-stage Ray runs."""
    pts = [(r["rows"], r["wall_s"]) for r in runs if r["engine"] == "ray" and r["stages"] == 2]
    if len(pts) < 2:
        return None
    x, y = np.array(pts, dtype=float).T
    slope, intercept = np.polyfit(x, y, 1)
    return {"fixed_s": round(float(intercept), 2), "us_per_row": round(float(slope) * 1e6, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--three-stage-rows", type=int, default=1_000_000)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8192)
    # One actor per stage: on 2 CPUs the other CPU runs the tasks that generate the rows (an
    # actor pool holds its CPUs, and with none left for upstream tasks the pipeline stalls).
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ray.json"))
    args = ap.parse_args()

    runs = []
    for n in args.rows:
        runs.append(run_ray(n, 2, args.num_cpus, args.batch_size, args.concurrency))
        print(runs[-1], flush=True)
    if args.three_stage_rows:
        runs.append(run_ray(args.three_stage_rows, 3, args.num_cpus, args.batch_size, args.concurrency))
        print(runs[-1], flush=True)
    big = max(args.rows)
    runs.append(run_memory(big, 2))
    runs.append(run_memory(big, 3))
    print(runs[-2], runs[-1], sep="\n")

    import ray

    result = {
        "benchmark": "bench_ray",
        "ray_version": ray.__version__,
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()} CPUs, shared with other jobs (noisy numbers)",
        "ray_num_cpus": args.num_cpus,
        "linear_fit_two_stage": fit_linear(runs),
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'engine':<18} {'rows':>9} {'stg':>3} {'wall s':>8} {'rows/s':>9} {'driver MiB':>10} "
          f"{'workers MiB':>11} {'store MiB':>9}")
    for r in runs:
        print(f"{r['engine']:<18} {r['rows']:>9} {r['stages']:>3} {r['wall_s']:>8} {r['rows_per_s']:>9} "
              f"{r['peak_driver_rss_mib']:>10} {r.get('peak_workers_rss_mib', '-')!s:>11} "
              f"{r.get('peak_object_store_mib', '-')!s:>9}")
    print(f"fit (two stages): {result['linear_fit_two_stage']}; wrote {args.out}")


if __name__ == "__main__":
    main()
