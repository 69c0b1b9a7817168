"""Certified savings that grow with traffic, with the LIVE monitor (issue 22, "Must show: growth").

``bench_stream_growth.py`` plays the monitor's sampling design on resampled stage outputs
(vectorised). This benchmark runs the real thing: a :class:`~confroute.monitoring.CertificateMonitor`
(SQLite ledger in a temporary file, its writer and shadow threads, label requests through a
label sink) around a real :class:`~confroute.ThresholdRouter`, whose two stages answer from the
precomputed SST-2 dev outputs (``benchmarks/results/sst2_dev_outputs.csv``: MiniLM int8 first,
MPNet int8 fallback). So the models cost nothing and everything else is the production code path.

The stream: 10^5 inputs resampled (with replacement) from the 872 dev rows, routed in batches of
``--batch``. The settings are the simulation's: target "system accuracy >= 99.5% of MPNet's",
audit rate 0.25, deferred disagreements labelled at 0.25, the ladder of dev-score coverages
2..70%, the router starting at the static certificate's threshold 0.9960, policy ``loosen``.
Two ways to know MPNet's accuracy, as in the simulation: ``reference`` (Clopper-Pearson lower
bound at 0.01 on dev, the stream at delta 0.04) and ``agreement sample`` (agreements labelled at
0.005, delta 0.05).

Labels come back late and in batches: the label sink only queues the requests; every
``--label-every`` inputs an annotator answers (with the true dev label) every request that is at
least ``--delay`` inputs old (counted from the input's position in the stream), through
``monitor.add_labels``, and then ``monitor.check()`` runs
(certificate, alarm, policy). Requests younger than the delay wait for the next batch; at a
checkpoint they count as losses for the certificate (pending labels are the worst case).

Writes ``benchmarks/results/monitor_growth.json`` (with the simulation's figures at 10^4, 3x10^4
and 10^5 inputs next to the live ones) and ``docs/img/monitor_growth.png``.

Usage::

    PYTHONPATH=src python benchmarks/bench_monitor_growth.py [--n 100000] [--seeds 2] [--variants reference]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta

from confroute import ThresholdRouter
from confroute.monitoring import CertificateMonitor, stream_ladder
from confroute.monitoring.simulate import StreamPopulation

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "results" / "sst2_dev_outputs.csv"
STATIC = 0.9960
AUDIT = 0.25
RHO = 0.995
REPORT = (10_000, 30_000, 100_000)


class Outputs:
    """A stage that answers from precomputed probabilities: inputs are dev row numbers."""

    def __init__(self, p1: np.ndarray) -> None:
        self.probs = np.stack([1.0 - p1, p1], axis=1)
        self.calls = 0

    def __call__(self, rows) -> np.ndarray:
        self.calls += 1
        return self.probs[np.asarray(rows, dtype=np.int64)]


class DelayedAnnotator:
    """The label sink: requests queue up; :meth:`answer` labels those old enough."""

    def __init__(self, labels: np.ndarray, stream_rows: np.ndarray) -> None:
        self.labels, self.rows = labels, stream_rows
        self.queue: list[tuple[int, str]] = []   # (stream position of the input, id)
        self.batches = 0

    def __call__(self, requests: list[dict]) -> None:
        self.queue.extend((int(r["id"].rsplit(":", 1)[1]), r["id"]) for r in requests)

    def answer(self, monitor: CertificateMonitor, now: int, delay: int) -> int:
        ready = [i for t, i in self.queue if now - t >= delay]
        self.queue = [(t, i) for t, i in self.queue if now - t < delay]
        if ready:
            pos = np.array([int(i.rsplit(":", 1)[1]) for i in ready])
            monitor.add_labels(ready, self.labels[self.rows[pos]].tolist())
            self.batches += 1
        return len(ready)


def run(pop: StreamPopulation, p1: np.ndarray, q1: np.ndarray, seed: int, variant: str, ns, ladder, ref) -> dict:
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, pop.label.size, ns.n)
    primary, fallback = Outputs(p1), Outputs(q1)
    router = ThresholdRouter(primary, fallback, threshold=STATIC)
    annotator = DelayedAnnotator(pop.label, stream)
    kw = {"reference": ref, "delta": 0.04} if variant == "reference" else {"agreement_rate": 0.005, "delta": 0.05}
    with tempfile.TemporaryDirectory() as tmp:
        monitor = CertificateMonitor(
            router, target_relative_accuracy=RHO, audit_rate=AUDIT, ledger=os.path.join(tmp, "ledger.sqlite"),
            label_sink=annotator, looser="loosen", random_state=seed, ladder=ladder.tolist(),
            deferred_disagreement_rate=0.25, auto_check=False, shadow_concurrency=1, **kw)
        t0, cpu0 = time.perf_counter(), time.process_time()
        curve = []
        for lo in range(0, ns.n, ns.batch):
            monitor.route(stream[lo:lo + ns.batch])
            end = min(lo + ns.batch, ns.n)
            if end % ns.label_every == 0:
                monitor.flush()
                answered = annotator.answer(monitor, end, ns.delay)
                out = monitor.check()
                cert, ev = out["certificate"], monitor.evidence()
                curve.append({
                    "n": end, "coverage": cert.coverage, "threshold": cert.threshold,
                    "deployed": out["threshold"], "feasible": cert.feasible, "alarm": out["alarm"],
                    "deployed_coverage_on_stream": float(np.mean(pop.score[stream[:end]] >= out["threshold"])),
                    "true_relative": float(pop.value([cert.threshold], "relative_accuracy")[0]),
                    "labels": ev["labels_received"], "labels_requested": ev["labels_requested"],
                    "labels_pending": ev["labels_pending"], "answered_now": answered,
                    "shadow_calls": ev["audited"] + ev["shadow_failures"], "disagreements": ev["disagreements"],
                    "seconds": time.perf_counter() - t0,
                })
        monitor.flush()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        changes = monitor.changes()
        monitor.close()
    return {"curve": curve, "seconds": seconds, "cpu_seconds": cpu, "label_batches": annotator.batches,
            "threshold_changes": [{k: c[k] for k in ("old", "new", "reason")} for c in changes],
            "primary_calls": primary.calls, "fallback_calls": fallback.calls}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--variants", default="reference,agreement sample")
    p.add_argument("--batch", type=int, default=100, help="inputs per route call")
    p.add_argument("--label-every", type=int, default=5000, help="inputs between label batches (and checks)")
    p.add_argument("--delay", type=int, default=2000, help="inputs a request waits at least for its label")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "monitor_growth.json")
    p.add_argument("--simulation", type=Path, default=ROOT / "benchmarks" / "results" / "stream_growth.json",
                   help="bench_stream_growth.py's results, to compare with")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "img" / "monitor_growth.png")
    ns = p.parse_args()
    d = np.loadtxt(CSV, delimiter=",", skiprows=1)
    p1, q1 = d[:, 1], d[:, 2]
    pop = StreamPopulation.from_csv(CSV)
    ladder = stream_ladder(pop.score, np.arange(0.02, 0.701, 0.02))
    k, n_dev = int(np.sum(pop.fallback == pop.label)), pop.label.size
    ref = float(beta.ppf(0.01, k, n_dev - k + 1))
    result: dict = {"population": pop.name, "rho": RHO, "audit_rate": AUDIT, "static_threshold": STATIC,
                    "n": ns.n, "batch": ns.batch, "label_every": ns.label_every, "delay": ns.delay,
                    "static_coverage": float(np.mean(pop.score >= STATIC)), "reference": ref,
                    "load_before": os.getloadavg(), "runs": {}}
    for variant in ns.variants.split(","):
        for seed in range(ns.seeds):
            r = run(pop, p1, q1, seed, variant, ns, ladder, ref)
            r["load_after"] = os.getloadavg()
            result["runs"][f"{variant}/{seed}"] = r
            pts = {c["n"]: c for c in r["curve"]}
            print(f"{variant} seed {seed}: " + "; ".join(
                f"{n:,}: cov {pts[n]['coverage']:.3f} labels {pts[n]['labels']}" for n in REPORT if n in pts)
                + f" [{r['seconds']:.0f} s wall, {r['cpu_seconds']:.0f} s CPU, load {r['load_after'][0]:.1f}]",
                flush=True)
            ns.out.write_text(json.dumps(result, indent=1) + "\n")
    result["comparison"] = compare(result, ns.simulation)
    ns.out.write_text(json.dumps(result, indent=1) + "\n")
    for row in result["comparison"]:
        print(f"{row['variant']:>16} {row['n']:>7,}: live coverage {row['live_coverage']} labels "
              f"{row['live_labels']} | simulated coverage {row['sim_coverage']} labels {row['sim_labels']}")
    figure(result, ns.simulation, ns.figure)
    print(f"wrote {ns.out} and {ns.figure}")


def figure(result: dict, simulation: Path, path: Path) -> None:
    """Certified coverage and labels against inputs seen: live monitor (solid) and the
    simulation (dotted), to 10^5 inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = json.loads(simulation.read_text())["runs"] if simulation.is_file() else {}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {"reference": "#4c72b0", "agreement sample": "#dd8452"}
    for source, runs, style in (("live monitor", result["runs"], "-"), ("simulation", sim, ":")):
        for key, run in runs.items():
            variant, seed = key.split("/")
            curve = [p for p in (run["curve"] if isinstance(run, dict) else run) if p["n"] <= result["n"]]
            label = f"{variant}, {source}" if seed == "0" else None
            n = [p["n"] for p in curve]
            ax.plot(n, [p["coverage"] for p in curve], style, color=colors[variant], alpha=0.7, label=label)
            bx.plot(n, [p["labels"] for p in curve], style, color=colors[variant], alpha=0.7, label=label)
    ax.axhline(result["static_coverage"], color="gray", ls="--", lw=0.8, label="static certificate (all dev)")
    ax.axhline(0.40, color="#c44e52", lw=0.8)
    bx.axhline(1000, color="#c44e52", ls="--", lw=0.8)
    for a in (ax, bx):
        a.set_xlabel("inputs seen")
    ax.set_ylabel("certified coverage")
    bx.set_ylabel("labels used")
    ax.legend(fontsize=7, loc="lower right")
    bx.legend(fontsize=7)
    fig.suptitle("SST-2 stream, live CertificateMonitor (SQLite ledger, delayed label batches) vs simulation",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def compare(result: dict, simulation: Path) -> list[dict]:
    """Per variant and report point: the live runs' certified coverage and labels used (min,
    median, max over seeds) next to the simulation's (``bench_stream_growth.py``'s JSON)."""
    sim = json.loads(simulation.read_text()) if simulation.is_file() else {"runs": {}}

    def stats(runs: dict, variant: str, n: int, key: str) -> list[float] | None:
        values = [next((p[key] for p in (r["curve"] if isinstance(r, dict) else r) if p["n"] == n), None)
                  for k, r in runs.items() if k.split("/")[0] == variant]
        values = [v for v in values if v is not None]
        return [float(np.min(values)), float(np.median(values)), float(np.max(values))] if values else None

    rows = []
    for variant in dict.fromkeys(k.split("/")[0] for k in result["runs"]):
        for n in REPORT:
            rows.append({"variant": variant, "n": n,
                         "live_coverage": stats(result["runs"], variant, n, "coverage"),
                         "live_labels": stats(result["runs"], variant, n, "labels"),
                         "sim_coverage": stats(sim["runs"], variant, n, "coverage"),
                         "sim_labels": stats(sim["runs"], variant, n, "labels")})
    return rows


if __name__ == "__main__":
    main()
