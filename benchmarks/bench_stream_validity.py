"""Validity of the stream certificates and the alarm (issue 22, "Must show: validity").

1. Stationary streams: for each setting, ``--streams`` streams of ``--n`` inputs are drawn with
   replacement from a population with known truth (SST-2 dev stage outputs, or a synthetic
   population), with the monitor's sampling design (deployed threshold at the ladder's middle
   rung, audit rate 0.25, deferred disagreements labelled at 0.25, agreements at 0.005). Each
   stream's certificate is the one checked after every label batch (labels back at once; the
   certified rung only grows, so the last check holds every earlier one). The share of streams
   whose certificate was EVER wrong must be at most delta (plus the validity suite's binomial
   margin).
2. Drift: the first stage's accuracy on accepted inputs drops by 2 points at a known input;
   the alarm of the deployed threshold (``ThresholdEProcess``) runs on every stream: the share
   alarmed before the drift (false alarms), and the detection delay after it.

Writes ``benchmarks/results/stream_validity.json`` and ``docs/img/stream_validity.png``.

Usage (the runs of docs/monitoring-statistics.md: the two relative settings at 1,000 streams,
the others first at 200 and then at 1,000, the drift at 1,000; the machine was shared, so the
budget went first to the settings the issue names)::

    PYTHONPATH=src python benchmarks/bench_stream_validity.py --only 0 1 --streams 1000 --no-drift
    PYTHONPATH=src python benchmarks/bench_stream_validity.py --only 2 3 4 5 6 --streams 200 \
        --drift-streams 100 --out benchmarks/results/stream_validity_more.json
    PYTHONPATH=src python benchmarks/bench_stream_validity.py --only --drift-streams 1000 \
        --out benchmarks/results/stream_validity_drift.json
    PYTHONPATH=src python benchmarks/bench_stream_validity.py --only 2 3 5 6 --streams 1000 --no-drift \
        --out benchmarks/results/stream_validity_1000b.json
    PYTHONPATH=src python benchmarks/bench_stream_validity.py --only 4 --streams 1000 --no-drift \
        --out benchmarks/results/stream_validity_1000c.json
    PYTHONPATH=src python benchmarks/bench_stream_validity.py --naive benchmarks/results/stream_validity_naive.json
    PYTHONPATH=src python benchmarks/bench_stream_validity.py --combine benchmarks/results/stream_validity.json \
        benchmarks/results/stream_validity_1000b.json benchmarks/results/stream_validity_1000c.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import binom

from confroute.monitoring import stream_ladder
from confroute.monitoring.simulate import StreamPopulation, drift_delays, validity

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "results" / "sst2_dev_outputs.csv"


def settings(sst: StreamPopulation, syn: StreamPopulation) -> list[tuple[StreamPopulation, dict]]:
    """In priority order (``--only`` picks by index)."""
    f_sst = float(np.mean(sst.fallback == sst.label))
    return [
        (sst, {"target_relative_accuracy": 0.995, "agreement_rate": 0.005}),
        (syn, {"target_relative_accuracy": 0.995, "agreement_rate": 0.005}),
        (sst, {"target_agreement": 0.995}),
        (syn, {"target_agreement": 0.985}),
        (sst, {"target_relative_accuracy": 0.995, "reference": f_sst}),
        (sst, {"max_accuracy_drop": 0.004}),
        (syn, {"max_accuracy_drop": 0.004}),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--drift-streams", type=int, default=200)
    p.add_argument("--only", type=int, nargs="*", help="indices of the settings to run (default: all)")
    p.add_argument("--no-drift", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stream_validity.json")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "img" / "stream_validity.png")
    p.add_argument("--combine", type=Path, nargs="*", help="only redraw the figure from these result files")
    p.add_argument("--naive", type=Path, help="only run the negative control (SST-2) and write it here")
    ns = p.parse_args()
    if ns.naive:
        res = naive(StreamPopulation.from_csv(CSV), ns.streams, ns.n)
        ns.naive.write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res))
        return
    if ns.combine:
        figure([r for f in ns.combine for r in json.loads(f.read_text())["validity"]], ns.figure)
        return
    sst = StreamPopulation.from_csv(CSV)
    syn = StreamPopulation.synthetic()
    rows: list[dict] = []
    drift: list[dict] = []
    for i, (pop, kw) in enumerate(settings(sst, syn)):
        if ns.only is not None and i not in ns.only:
            continue
        lad = stream_ladder(pop.score)
        t0 = time.perf_counter()
        r = validity(pop, streams=ns.streams, n=ns.n, seed=2026, ladder=lad, deployed_threshold=float(lad[24]),
                     audit_rate=0.25, deferred_disagreement_rate=0.25, delta=0.05, **kw)
        r["setting"] = ", ".join(f"{k}={v:.4g}" for k, v in kw.items())
        r["seconds"] = time.perf_counter() - t0
        r["margin"] = float(binom.ppf(0.9999, ns.streams, 0.05)) / ns.streams
        rows.append(r)
        print(json.dumps(r), flush=True)
        save(ns, rows, drift)
    cases = () if ns.no_drift else ((sst, {"target_relative_accuracy": 0.995}), (syn, {"max_accuracy_drop": 0.004}))
    for pop, kw in cases:
        lad = stream_ladder(pop.score)
        for drift_at in (ns.n // 2, ns.n):          # ns.n: no drift inside the stream (false alarms only)
            t0 = time.perf_counter()
            d = drift_delays(pop, streams=ns.drift_streams, n=ns.n, drift_at=drift_at, seed=7,
                             threshold=float(lad[24]), audit_rate=0.25, ladder_floor=float(lad[-1]),
                             deferred_disagreement_rate=0.25, delta=0.05, drift_drop=0.02, **kw)
            d["seconds"] = time.perf_counter() - t0
            drift.append(d)
            print(json.dumps(d), flush=True)
            save(ns, rows, drift)
    if rows:
        figure(rows, ns.figure)
    print(f"wrote {ns.out} and {ns.figure}")


def naive(pop: StreamPopulation, streams: int, n: int, seed: int = 2026) -> dict:
    """The negative control: certify the leading run of rungs whose inverse-probability-weighted
    POINT ESTIMATE meets "relative accuracy >= 0.995", checked every 5,000 inputs (no confidence
    sequence); the same streams as the first setting. It should be ever wrong far more than delta."""
    from confroute.monitoring.simulate import simulate_records

    lad = stream_ladder(pop.score)
    first_false = int(np.argmin(pop.truth(lad, "relative_accuracy", 0.995)))
    rng = np.random.default_rng(seed)
    wrong = 0
    for _ in range(streams):
        r = simulate_records(pop, n, rng, deployed_threshold=float(lad[24]), audit_rate=0.25,
                             ladder_floor=float(lad[-1]), agreement_rate=0.005, deferred_disagreement_rate=0.25)
        got = r.label >= 0
        w = np.where(got, 1 / (r.p_fallback * np.where(r.p_label > 0, r.p_label, 1)), 0)
        c, f = got & (r.label == r.primary), got & (r.label == r.fallback)
        loss = np.cumsum((r.score[None, :] >= lad[:, None]) * w * (f.astype(float) - c), axis=1)
        fb = np.cumsum(w * f)
        cps = np.arange(5000, n + 1, 5000) - 1
        ok = loss[:, cps] <= 0.005 * fb[cps]
        run = np.where(ok.all(axis=0), lad.size, np.argmin(ok, axis=0))
        wrong += bool((run > first_false).any())
    return {"population": pop.name, "procedure": "IPW point estimate, checked every 5,000 inputs",
            "streams": streams, "n": n, "ever_wrong": wrong / streams}


def save(ns: argparse.Namespace, rows: list[dict], drift: list[dict]) -> None:
    ns.out.write_text(json.dumps({"streams": ns.streams, "n": ns.n, "delta": 0.05, "validity": rows,
                                  "drift": drift}, indent=2) + "\n")


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = {"target_relative_accuracy": "relative", "target_agreement": "agreement", "max_accuracy_drop": "drop",
             "agreement_rate": "agr. labels", "reference": "reference"}

    def label(r: dict) -> str:
        parts = [f"{short[k]} {v}" for k, v in (kv.split("=") for kv in r["setting"].split(", "))]
        return "\n".join([r["population"].split(" (")[0], *parts])

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(rows))
    ax.bar(x, [r["ever_wrong"] for r in rows], color="#4c72b0")
    ax.axhline(0.05, color="#c44e52", ls="--", label="delta = 0.05")
    for i, r in enumerate(rows):
        ax.text(i, r["ever_wrong"] + 0.002, f"{round(r['ever_wrong'] * r['streams'])}/{r['streams']}",
                ha="center", fontsize=6)
    ax.set_ylabel("share of streams ever wrong")
    ax.set_ylim(0, 0.08)
    ax.legend(fontsize=7)
    bx.bar(x - 0.2, [r["mean_coverage"] for r in rows], width=0.4, color="#55a868", label="mean certified")
    bx.bar(x + 0.2, [r["oracle_coverage"] for r in rows], width=0.4, color="#bbbbbb", label="best true rung")
    bx.set_ylabel("coverage")
    bx.legend(fontsize=7)
    for a in (ax, bx):
        a.set_xticks(x, [label(r) for r in rows], fontsize=5.5)
    fig.suptitle(f"Stream certificates checked after every label batch ({rows[0]['n']:,} inputs per stream)",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
