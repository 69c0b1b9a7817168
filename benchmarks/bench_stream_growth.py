"""Certified savings that grow with traffic (issue 22, "Must show: growth").

A stream resampled from the 872 SST-2 dev stage outputs (MiniLM int8 first, MPNet int8 fallback;
``benchmarks/results/sst2_dev_outputs.csv``), target "system accuracy >= 99.5% of MPNet's",
delta 0.05 in all, audit rate 0.25. The router starts at the static certificate's threshold
(0.9960, 19.3% coverage, certified on all of dev) and the monitor, checked every 5,000 inputs,
deploys each looser certified threshold (the opt-in ``loosen`` policy). Deferred disagreements
are labelled at 0.25 (accepted, audited disagreements always). The candidate ladder: the dev
scores at coverages 2%, 4%, ..., 70% (fixed before the stream).

Two ways to know the fallback's accuracy (see docs/monitoring.md):

* ``reference``: the Clopper-Pearson lower bound (at 0.01) of MPNet's accuracy on the labelled
  dev set, the stream certificate at delta 0.04 (0.01 + 0.04 = 0.05);
* ``agreement sample``: no offline labels at all; agreements labelled at rate 0.005, delta 0.05.

And the label-free certificate "the system agrees with MPNet on >= 99.5% of inputs" on the
same stream. Writes ``benchmarks/results/stream_growth.json`` and ``docs/img/stream_growth.png``.

Usage::

    PYTHONPATH=src python benchmarks/bench_stream_growth.py [--seeds 5] [--long-seeds 2] [--max-n 1000000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta

from confroute.monitoring import StreamRecords, certify_stream, stream_ladder
from confroute.monitoring.simulate import StreamPopulation, simulate_records

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "results" / "sst2_dev_outputs.csv"
STATIC = 0.9960       # the static certificate's threshold on all of dev (docs/sst2-study.md)
AUDIT = 0.25
RHO = 0.995


def checkpoints(max_n: int) -> list[int]:
    return [*range(5000, min(max_n, 100_000) + 1, 5000), *range(125_000, max_n + 1, 25_000)]


def run(pop: StreamPopulation, seed: int, max_n: int, variant: str, ladder: np.ndarray, ref: float) -> list[dict]:
    rng = np.random.default_rng(seed)
    parts: list[StreamRecords] = []
    deployed, done, out = STATIC, 0, []
    ar = 0.005 if variant == "agreement sample" else 0.0
    kw = {"reference": ref, "delta": 0.04} if variant == "reference" else {"delta": 0.05}
    for cp in checkpoints(max_n):
        parts.append(simulate_records(pop, cp - done, rng, deployed_threshold=deployed, audit_rate=AUDIT,
                                      ladder_floor=float(ladder[-1]), agreement_rate=ar,
                                      deferred_disagreement_rate=0.25))
        done = cp
        rec = StreamRecords.concat(parts)
        parts = [rec]
        c = certify_stream(rec, ladder=ladder, target_relative_accuracy=RHO, min_probability=AUDIT, **kw)
        a = certify_stream(rec, ladder=ladder, target_agreement=RHO, delta=0.05)
        if c.feasible and c.threshold < deployed:
            deployed = c.threshold
        ev = c.evidence
        out.append({"n": cp, "coverage": c.coverage, "threshold": c.threshold, "deployed": deployed,
                    "true_relative": float(pop.value([c.threshold], "relative_accuracy")[0]),
                    "labels": ev["labels_received"], "shadow_calls": ev["n_shadow"],
                    "disagreements": ev["n_disagreements"], "agreement_coverage": a.coverage,
                    "agreement_threshold": a.threshold,
                    "true_agreement": float(pop.value([a.threshold], "agreement")[0])})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="streams to 100,000 inputs")
    p.add_argument("--long-seeds", type=int, default=2, help="of which run to --max-n")
    p.add_argument("--max-n", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stream_growth.json")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "img" / "stream_growth.png")
    ns = p.parse_args()
    pop = StreamPopulation.from_csv(CSV)
    ladder = stream_ladder(pop.score, np.arange(0.02, 0.701, 0.02))
    k, n_dev = int(np.sum(pop.fallback == pop.label)), pop.label.size
    ref = float(beta.ppf(0.01, k, n_dev - k + 1))
    oracle = pop.truth(ladder, "relative_accuracy", RHO)
    first_false = int(np.argmin(oracle)) if not oracle.all() else ladder.size
    result: dict = {"population": pop.name, "rho": RHO, "audit_rate": AUDIT, "static_threshold": STATIC,
                    "static_coverage": float(np.mean(pop.score >= STATIC)), "reference": ref,
                    "ladder_oracle_coverage": float(np.mean(pop.score >= ladder[first_false - 1])),
                    "runs": {}}
    t0 = time.perf_counter()
    for variant in ("reference", "agreement sample"):
        for seed in range(ns.seeds):
            max_n = ns.max_n if seed < ns.long_seeds else 100_000
            curve = run(pop, seed, max_n, variant, ladder, ref)
            result["runs"][f"{variant}/{seed}"] = curve
            at = next(r for r in curve if r["n"] == 100_000)
            print(f"{variant} seed {seed}: at 1e5 coverage {at['coverage']:.3f} labels {at['labels']} "
                  f"agreement-cert coverage {at['agreement_coverage']:.3f}; at {curve[-1]['n']:,}: "
                  f"{curve[-1]['coverage']:.3f} ({curve[-1]['labels']} labels) "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    result["seconds"] = time.perf_counter() - t0
    ns.out.write_text(json.dumps(result, indent=1) + "\n")
    figure(result, ns.figure)
    print(f"wrote {ns.out} and {ns.figure}")


def figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {"reference": "#4c72b0", "agreement sample": "#dd8452"}
    for key, curve in result["runs"].items():
        variant, seed = key.split("/")
        n = [r["n"] for r in curve]
        lab = f"relative 99.5%, {variant}" if seed == "0" else None
        ax.plot(n, [r["coverage"] for r in curve], color=colors[variant], alpha=0.8, label=lab)
        bx.plot(n, [r["labels"] for r in curve], color=colors[variant], alpha=0.8, label=lab)
        if variant == "reference":
            ax.plot(n, [r["agreement_coverage"] for r in curve], color="#55a868", alpha=0.8,
                    label="agreement >= 99.5% (no labels)" if seed == "0" else None)
    ax.axhline(result["static_coverage"], color="gray", ls=":", label="static certificate (all dev)")
    ax.axhline(result["ladder_oracle_coverage"], color="black", ls="--", label="oracle (ladder rung)")
    ax.axvline(100_000, color="#c44e52", lw=0.8)
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xlabel("inputs seen")
    ax.set_ylabel("certified coverage")
    bx.set_ylabel("labels used")
    bx.axhline(1000, color="#c44e52", ls="--", lw=0.8)
    ax.legend(fontsize=7, loc="lower right")
    bx.legend(fontsize=7)
    fig.suptitle("SST-2 stream (MiniLM int8 -> MPNet int8), delta 0.05, audit rate 0.25", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
