"""Benchmark: JSON against binary tensors (the KServe v2 binary tensor data extension).

Two measurements, each pairing JSON and binary in the same window (alternating, same data):

(a) **OIPPredictor against a real KServe model server** (``kserve.ModelServer`` 0.21.0, from
    ``tools/kserve_venv.sh``, serving ``tools/kserve/probs_server.py``): one ``predict`` call of
    ``n`` inputs in one request, ``binary=False`` against ``binary=True``, for FP64 feature rows
    ``[n, 64]`` and for BYTES texts (SST-2 dev sentences, cycled). The time is the client's wall
    time per call: encode, HTTP on loopback, the server's decode, model and encode, and decode.
(b) **The service's OIP answer** (``confroute.integrations.serve``), in process: the time to
    build the body of an answer of ``n`` rows (8 outputs) as JSON against binary, and a client's
    time to read it back (``json.loads`` against ``tritonclient``'s ``InferResult``).
(c) with ``--service``: **the routed service on Ray Serve** (2 CPUs) called by ``tritonclient``,
    binary against JSON, on a numeric router whose models cost little (see :func:`bench_service`).

Usage::

    python benchmarks/bench_oip_binary.py [--sizes 64 1024 8192] [--repeats 15] [--service]

Writes benchmarks/results/oip_binary.json. The machine is shared: read the ratios, and the load
average printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from confroute import OIPPredictor  # noqa: E402
from confroute.core import _oip_wire as wire  # noqa: E402
from confroute.core import schema  # noqa: E402

KSERVE_PY = Path(os.environ.get("CONFROUTE_KSERVE_PYTHON", ROOT / ".cache" / "kserve-venv" / "bin" / "python"))
SHARED = Path(os.environ.get("CONFROUTE_SHARED", ROOT.parent / "shared"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_kserve(dim: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([str(KSERVE_PY), str(ROOT / "tools" / "kserve" / "probs_server.py"),
                             "--http_port", str(port), "--dim", str(dim)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v2/models/probs/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the KServe model server did not start (tools/kserve_venv.sh builds its venv)")


def sst2(n: int) -> list[str]:
    lines = (SHARED / "data" / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [line.split("\t")[0] for line in lines]
    return [texts[i % len(texts)] for i in range(n)]


def paired(fns: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls alternating (one warm-up call each)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def bench_predictor(url: str, sizes: list[int], repeats: int, dim: int) -> list[dict[str, Any]]:
    kw = dict(classes=["neg", "pos"], output="probs", input_name="input", output_name="probs")
    rows = []
    for kind in ("FP64", "BYTES"):
        for n in sizes:
            data: Any = np.random.default_rng(n).normal(size=(n, dim)) if kind == "FP64" else sst2(n)
            preds = {b: OIPPredictor(url, "probs", binary=b, batch_size=n, **kw) for b in (False, True)}
            a, b = preds[False].predict(data).probs, preds[True].predict(data).probs
            assert np.array_equal(a, b), "JSON and binary answers differ"
            t = paired({"json": lambda: preds[False].predict(data), "binary": lambda: preds[True].predict(data)},
                       repeats)
            rows.append({"part": "predictor", "input": kind, "n": n, "json_s": t["json"], "binary_s": t["binary"],
                         "json_over_binary": t["json"] / t["binary"]})
            print(f"OIPPredictor {kind:5s} n={n:5d}: json {t['json'] * 1e3:8.2f} ms  binary "
                  f"{t['binary'] * 1e3:8.2f} ms  ratio {t['json'] / t['binary']:.2f}", flush=True)
    return rows


def bench_service_answer(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    from tritonclient.http import InferResult

    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        stage = rng.integers(0, 2, n)
        cols = {
            "label": np.array([["NEGATIVE", "POSITIVE"][i] for i in rng.integers(0, 2, n)], dtype=object),
            "label_index": rng.integers(0, 2, n).astype(np.int64),
            "confidence": rng.uniform(0.5, 1, n),
            "stage": stage.astype(np.int64),
            "stage_name": np.array([["minilm", "mpnet"][s] for s in stage], dtype=object),
            "degraded": np.zeros(n, dtype=bool),
            "error": np.full(n, None, dtype=object),
            "cost": 1.0 + 10.0 * stage,
        }
        types = {"label": "BYTES", "label_index": "INT64", "confidence": "FP64", "stage": "INT64",
                 "stage_name": "BYTES", "degraded": "BOOL", "error": "BYTES", "cost": "FP64"}

        def answer(binary: bool) -> tuple[bytes, int | None]:
            outs = [{"name": k, "datatype": types[k], "shape": [n],
                     "data": cols[k] if binary else [r[k] for r in schema.json_rows({k: cols[k]})]} for k in cols]
            return wire.encode({"model_name": "sst2", "outputs": outs}, "outputs", binary)

        json_body, _ = answer(False)
        bin_body, header = answer(True)

        def read(body: bytes, header: int | None) -> None:
            r = InferResult.from_response_body(body, header_length=header)
            for k in cols:
                r.as_numpy(k)

        t = paired({"json_encode": lambda: answer(False), "binary_encode": lambda: answer(True),
                    "json_read": lambda: read(json_body, None), "binary_read": lambda: read(bin_body, header)},
                   repeats)
        rows.append({"part": "service_answer", "n": n, "json_bytes": len(json_body), "binary_bytes": len(bin_body),
                     **{f"{k}_s": v for k, v in t.items()}})
        print(f"service answer n={n:5d}: encode json {t['json_encode'] * 1e3:7.2f} ms binary "
              f"{t['binary_encode'] * 1e3:7.2f} ms; tritonclient read json {t['json_read'] * 1e3:7.2f} ms binary "
              f"{t['binary_read'] * 1e3:7.2f} ms; bytes {len(json_body)} vs {len(bin_body)}", flush=True)
    return rows


def bench_service(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    """(c) The routed service itself on Ray Serve (2 CPUs, default resources): a numeric router
    (scikit-learn stage, then a stage that fails on some rows: ``tests/_routing_cases.py``), so the
    models cost little and the wire shows; ``tritonclient.http`` with ``binary_data`` True (its
    default) against False on the input and every output."""
    import ray
    import tritonclient.http as triton
    from ray import cloudpickle, serve

    sys.path.insert(0, str(ROOT / "tests"))
    import _routing_cases

    from confroute.integrations.serve import build_app

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    cloudpickle.register_pickle_by_value(_routing_cases)
    rows = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(_routing_cases.two_stage, name="toy", metrics=False,
                            stage_options={"max_batch_size": max(sizes)}), name="toy", route_prefix="/")
        client = triton.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=600.0, connection_timeout=60.0)
        names = ["label", "label_index", "confidence", "stage", "stage_name", "degraded", "error", "cost"]
        for n in sizes:
            X, _ = _routing_cases.features(n, seed=n)

            def call(binary: bool) -> None:
                tensor = triton.InferInput("input", [n, 3], "FP64")
                tensor.set_data_from_numpy(X, binary_data=binary)
                outs = [triton.InferRequestedOutput(k, binary_data=binary) for k in names]
                result = client.infer("toy", [tensor], outputs=outs)
                for k in names:
                    result.as_numpy(k)

            t = paired({"json": lambda: call(False), "binary": lambda: call(True)}, repeats)
            rows.append({"part": "service_tritonclient", "input": "FP64 [n,3]", "n": n, "json_s": t["json"],
                         "binary_s": t["binary"], "json_over_binary": t["json"] / t["binary"]})
            print(f"service (Ray Serve) via tritonclient n={n:5d}: json {t['json'] * 1e3:8.2f} ms  binary "
                  f"{t['binary'] * 1e3:8.2f} ms  ratio {t['json'] / t['binary']:.2f}", flush=True)
        client.close()
    finally:
        serve.shutdown()
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(_routing_cases)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 1024, 8192])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--service", action="store_true", help="also (c): the routed service on Ray Serve")
    args = ap.parse_args()
    load_before = os.getloadavg()
    print(f"load average before: {load_before}", flush=True)
    proc, url = start_kserve(args.dim)
    try:
        rows = bench_predictor(url, args.sizes, args.repeats, args.dim)
    finally:
        proc.terminate()
        proc.wait(10)
    rows += bench_service_answer(args.sizes, args.repeats)
    if args.service:
        rows += bench_service(args.sizes, args.repeats)
    load_after = os.getloadavg()
    print(f"load average after: {load_after}", flush=True)
    out = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_before": load_before,
           "load_after": load_after, "repeats": args.repeats, "rows": rows}
    path = ROOT / "benchmarks" / "results" / "oip_binary.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
