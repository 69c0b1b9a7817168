"""Benchmark: what the certificate monitor's shadow path costs the user's latency.

One client sends SST-2 dev sentences one at a time (a serving request each) to a router of the
MiniLM pruned80 ONNX model (first stage) and the MPNet int8 ONNX model (fallback), threshold
0.9, one ONNX Runtime thread per model. Auditing **off** is ``router.route``; auditing **on** is
``CertificateMonitor.route`` (``audit_rate`` 0.25 of the accepted inputs shadow-called to the
fallback on the monitor's own thread, every record, audit and label request written to a SQLite
ledger by the monitor's writer thread). Blocks of ``--block`` requests, off then on, alternate
``--repeats`` times in one run, so load from other jobs on a shared machine hits both alike;
after each "on" block the monitor is flushed (untimed), so that its backlog does not spill into
the next "off" block. Latency is measured around the call only (what the user waits for).

``--nice``: the monitor's ``shadow_nice`` (default 19; 0 runs the shadow and ledger threads at
the serving threads' priority). Results: ``benchmarks/results/monitor_overhead.json`` (``--out``).

Usage::

    python benchmarks/bench_monitor_overhead.py [--block 100] [--repeats 6] [--nice 19] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from confroute import ThresholdRouter
from confroute.monitoring import CertificateMonitor
from confroute.predictors.onnxruntime import ONNXRuntimePredictor

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--audit-rate", type=float, default=0.25)
    ap.add_argument("--nice", type=int, default=19, help="shadow_nice of the monitor (0: no renicing)")
    ap.add_argument("--shared", type=Path, default=Path("/work/shared"))
    ap.add_argument("--primary", type=Path, default=None, help="default: SHARED/models/minilm-sst2-pruned80")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "monitor_overhead.json")
    ns = ap.parse_args()
    with open(ns.shared / "data" / "sst2" / "dev.tsv", encoding="utf-8") as f:
        texts = [row["sentence"] for row in csv.DictReader(f, delimiter="\t")]
    primary = ONNXRuntimePredictor(ns.primary or ns.shared / "models" / "minilm-sst2-pruned80", num_threads=1)
    fallback = ONNXRuntimePredictor(ns.shared / "models" / "mpnet-sst2-int8", num_threads=1)
    router = ThresholdRouter(primary, fallback, threshold=0.9)
    ledger = Path(tempfile.mkdtemp()) / "ledger.sqlite"
    monitor = CertificateMonitor(router, target_agreement=0.99, audit_rate=ns.audit_rate, ledger=ledger,
                                 random_state=0, shadow_concurrency=1, shadow_nice=ns.nice)
    for t in texts[:20]:  # warm-up, untimed
        router.route([t])
        monitor.route([t])
    monitor.flush()
    lat: dict[str, list[float]] = {"off": [], "on": []}
    i = 20
    for _ in range(ns.repeats):
        for mode in ("off", "on"):
            call = router.route if mode == "off" else monitor.route
            for _ in range(ns.block):
                text = texts[i % len(texts)]
                i += 1
                t0 = time.perf_counter()
                call([text])
                lat[mode].append(time.perf_counter() - t0)
            if mode == "on":
                monitor.flush()
    evidence = monitor.evidence()
    monitor.close()
    out = {"requests_per_mode": len(lat["off"]), "audit_rate": ns.audit_rate, "threads_per_model": 1,
           "shadow_nice": ns.nice,
           "load_average": os.getloadavg(), "cpus": os.cpu_count(), "evidence": evidence}
    for mode, values in lat.items():
        ms = np.array(values) * 1e3
        out[mode] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                     "mean_ms": float(ms.mean())}
    out["p50_overhead"] = out["on"]["p50_ms"] / out["off"]["p50_ms"] - 1
    out["p99_overhead"] = out["on"]["p99_ms"] / out["off"]["p99_ms"] - 1
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
