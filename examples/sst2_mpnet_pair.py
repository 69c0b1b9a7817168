"""The SST-2 study on a pair where routing can win: MiniLM (int8, or pruned80) first, MPNet int8 as fallback.

What it does (docs/sst2-study.md, "A stronger fallback", reports the figures):

1. Runs every single model on SST-2 dev (872 sentences), one thread each, batch 32, sorted by
   length, and caches the outputs: MiniLM dense int8 (made by ``benchmarks/make_int8.py`` with
   ``export_to_onnx(..., quantize="int8")``), MiniLM dense fp32 (ONNX Runtime), MiniLM pruned80
   (DeepSparse, length buckets) and MPNet int8 (``../shared/models/mpnet-sst2-int8``).
2. Times a full pass of each model, interleaved, ``--repeats`` times (medians): the measured
   seconds per sentence are the stage prices.
3. For each cheap model in front of MPNet: ``evaluate()`` sweeps every threshold;
   ``choose_thresholds`` picks the threshold for "system accuracy >= 99.5% of MPNet's", on dev
   itself (oracle, for scale) and by cross-fitting on dev (5 folds x 20 fold assignments; the
   fixed-sequence rule, with and without a 0.25-point margin), so no sentence is scored by a
   threshold chosen with its own label.
4. Runs the chosen routed systems for real (cheap model on everything, MPNet on what it
   deferred), wall clock against MPNet alone in the same repeat, and reports the accuracy of that
   run itself (dynamic int8 quantisation makes outputs depend slightly on batch composition).
5. Puts the routed operating points and every single model on one accuracy-vs-measured-time
   Pareto front (:func:`confroute.evaluation.alternatives.compare_to_alternatives`) and says
   whether routing is on it, and whether it beats MPNet int8 and MiniLM int8 at equal accuracy.

Run from the repository root after ``bash tools/run.sh int8`` (makes the int8 MiniLM)::

    .venv/bin/python examples/sst2_mpnet_pair.py --figures docs/img \\
        --results benchmarks/results/sst2_mpnet_pair.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sst2_routing import Cache, crossfit, fingerprint, relative_choice, subset, wall  # noqa: E402

from confroute import CostModel, load_texts  # noqa: E402
from confroute.evaluation.alternatives import compare_to_alternatives  # noqa: E402
from confroute.evaluation.evaluate import evaluate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHEAP = ("MiniLM int8", "pruned80 DeepSparse")
FALLBACK = "MPNet int8"
#: The chosen operating points that are run for real (wall clock).
TIMED = ("oracle (chosen on dev)", "cross-fit, fixed-sequence +0.25pt")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("CONFROUTE_SHARED") or str(REPO.parent / "shared"))
    p.add_argument("--models-cache", default="~/.cache/confroute",
                   help="where benchmarks/make_int8.py put the MiniLM int8 and fp32 ONNX models")
    p.add_argument("--cache-dir", default="~/.cache/confroute/sst2", help="cached model outputs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--crossfit-seeds", type=int, default=20)
    p.add_argument("--relative", type=float, default=0.995)
    p.add_argument("--figures", metavar="DIR")
    p.add_argument("--results", metavar="FILE")
    return p.parse_args(argv)


def make_models(shared: Path, models_cache: Path, threads: int) -> dict[str, Any]:
    from confroute.predictors import DeepSparsePredictor, ONNXRuntimePredictor

    int8 = models_cache / "minilm-sst2-dense-int8"
    fp32 = models_cache / "minilm-sst2-dense-onnx"
    for d in (int8, fp32):
        if not (d / "model.onnx").is_file():
            raise SystemExit(f"{d} is missing: run `bash tools/run.sh int8` first (benchmarks/make_int8.py)")
    return {
        # Dynamically quantised graphs batch in input order by default (their outputs depend on
        # batch composition); for MiniLM int8 sorted batches measured the same dev accuracy
        # (0.8922 either way, docs/backends.md), so the cheap stage takes the faster path.
        "MiniLM int8": ONNXRuntimePredictor(int8, num_threads=threads, name="minilm-int8", sort_by_length=True),
        "pruned80 DeepSparse": DeepSparsePredictor(shared / "models/minilm-sst2-pruned80", num_cores=threads,
                                                   sequence_length=64, name="pruned80-ds"),
        "MiniLM fp32": ONNXRuntimePredictor(fp32, num_threads=threads, name="minilm-fp32"),
        FALLBACK: ONNXRuntimePredictor(shared / "models/mpnet-sst2-int8", num_threads=threads, name="mpnet-int8"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shared = Path(args.shared).expanduser().resolve()
    models_cache = Path(args.models_cache).expanduser()
    cache = Cache(Path(args.cache_dir).expanduser())
    texts, y = load_texts(shared / "data/sst2/dev.tsv")
    texts, n = list(texts), len(texts)
    models = make_models(shared, models_cache, args.threads)
    paths = {"MiniLM int8": models_cache / "minilm-sst2-dense-int8", "MiniLM fp32": models_cache / "minilm-sst2-dense-onnx",
             "pruned80 DeepSparse": shared / "models/minilm-sst2-pruned80", FALLBACK: shared / "models/mpnet-sst2-int8"}

    # 1. Outputs on dev (sorted batches of 32, as deployed), cached.
    k_dev = fingerprint(texts)
    preds = {name: cache.logits(f"pair-{name.replace(' ', '_')}-dev",
                                fingerprint(paths[name], k_dev, f"batch32-sorted{m.sort_by_length}"),
                                lambda m=m: m.predict(texts)) for name, m in models.items()}
    print("batches sorted by length: " + ", ".join(f"{k} {m.sort_by_length}" for k, m in models.items()))
    acc = {name: float(np.mean(p.label_index == y)) for name, p in preds.items()}
    target = args.relative * acc[FALLBACK]
    print("dev accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    print(f"bar: system accuracy >= {args.relative:.1%} of {FALLBACK} = {target:.4f} ({target * n:.1f} of {n})")

    # 2. Full passes, interleaved; medians are the per-sentence prices.
    print(f"\ntiming full passes over dev ({args.repeats} repeats, {args.threads} thread(s) each)...")
    for name, m in models.items():
        # Warm-up: first-call allocations; DeepSparse compiles a bucket the first time one is needed.
        m.predict(texts if name.startswith("pruned80") else texts[:64])
    full: dict[str, list[float]] = {name: [] for name in models}
    fc = preds[FALLBACK].label_index == y

    # 3. Thresholds per cheap model: oracle on dev; cross-fit (fixed-sequence, margin 0 / 0.25 pt).
    chosen: dict[str, dict[str, Any]] = {}
    for cheap in CHEAP:
        s = preds[cheap].probs.max(axis=1)
        pc = preds[cheap].label_index == y

        def cf(margin: float, s: np.ndarray = s, pc: np.ndarray = pc):
            return lambda sel, app: s[app] >= relative_choice(s[sel], pc[sel], fc[sel], args.relative,
                                                              "fixed-sequence", margin)

        def point(keep: np.ndarray, pc: np.ndarray = pc) -> dict[str, Any]:
            correct = np.where(keep, pc, fc)
            return {"coverage": float(keep.mean()), "system_accuracy": float(correct.mean()),
                    "relative": float(correct.mean() / acc[FALLBACK]), "holds": bool(correct.mean() >= target - 1e-12)}

        t_oracle = relative_choice(s, pc, fc, args.relative)
        rows = {"oracle (chosen on dev)": point(s >= t_oracle) | {"threshold": t_oracle}}
        masks = {"oracle (chosen on dev)": s >= t_oracle}
        for label, margin in (("cross-fit, fixed-sequence", 0.0), ("cross-fit, fixed-sequence +0.25pt", 0.0025)):
            runs = [point(crossfit(n, args.folds, seed, cf(margin))) for seed in range(args.crossfit_seeds)]
            masks[label] = crossfit(n, args.folds, 0, cf(margin))
            rows[label] = {k: float(np.mean([r[k] for r in runs])) for k in ("coverage", "system_accuracy", "relative")}
            rows[label]["range_coverage"] = [min(r["coverage"] for r in runs), max(r["coverage"] for r in runs)]
            rows[label]["range_relative"] = [min(r["relative"] for r in runs), max(r["relative"] for r in runs)]
            rows[label]["holds_share"] = float(np.mean([r["holds"] for r in runs]))
        chosen[cheap] = {"rows": rows, "masks": masks}

    # 4. Routed runs for real, against MPNet alone in the same repeat.
    measured: dict[str, dict[str, list[float]]] = {}
    measured_acc: dict[str, float] = {}
    for rep in range(args.repeats):
        for name, m in models.items():
            full[name].append(wall(m.predict, texts))
        for cheap in CHEAP:
            for label, keep in chosen[cheap]["masks"].items():
                if label not in TIMED:
                    continue
                key = f"{cheap} -> {FALLBACK}, {label}"
                deferred = subset(texts, ~keep)
                box: dict[str, Any] = {}
                t = full[cheap][-1] + wall(lambda: box.setdefault("out", models[FALLBACK].predict(deferred)))
                measured.setdefault(key, {"seconds": [], "ratio_to_fallback": []})
                measured[key]["seconds"].append(t)
                measured[key]["ratio_to_fallback"].append(t / full[FALLBACK][-1])
                if rep == 0:
                    final = preds[cheap].label_index.copy()
                    final[~keep] = box["out"].label_index
                    measured_acc[key] = float(np.mean(final == y))
        print(f"  repeat {rep + 1}: " + ", ".join(f"{k} {n / v[-1]:.0f}/s" for k, v in full.items()), flush=True)
    tau = {name: float(np.median(v)) / n for name, v in full.items()}

    # 5. Pareto fronts: routed operating points (every threshold that routes some inputs, priced
    # with the measured per-sentence times) against every single model.
    singles = {name: (1e3 * tau[name], acc[name]) for name in models}
    comparisons, sweeps = {}, {}
    for cheap in CHEAP:
        y_values = np.asarray(preds[FALLBACK].classes)[y] if preds[FALLBACK].classes else y  # the models' label space
        res = evaluate(labels=y_values, primary=preds[cheap], fallback=preds[FALLBACK],
                       cost_model=CostModel.per_sample([tau[cheap], tau[FALLBACK]]), stage_names=(cheap, FALLBACK))
        t = res.table
        routes = (t["coverage"] > 0) & (t["coverage"] < 1)
        sweeps[cheap] = res
        comparisons[cheap] = compare_to_alternatives(
            1e3 * t["cost"][routes] / n, t["system_accuracy"][routes], singles, cost_unit="ms per sentence")

    report(args, acc, target, tau, chosen, measured, measured_acc, comparisons, sweeps, n)
    out = {
        "n_dev": n, "threads": args.threads, "repeats": args.repeats, "relative_target": args.relative,
        "target_system_accuracy": target, "accuracy": acc, "ms_per_sentence": {k: 1e3 * v for k, v in tau.items()},
        "full_pass_seconds": full,
        "chosen": {c: {k: v for k, v in d["rows"].items()} for c, d in chosen.items()},
        "measured_routed": {k: {"median_ratio_to_fallback": float(np.median(v["ratio_to_fallback"])),
                                "min_ratio": float(min(v["ratio_to_fallback"])), "max_ratio": float(max(v["ratio_to_fallback"])),
                                "median_ms_per_sentence": 1e3 * float(np.median(v["seconds"])) / n,
                                "accuracy_of_the_run": measured_acc[k], "seconds": v["seconds"]}
                            for k, v in measured.items()},
        # Every single model and the routed points on the front (the full sweep is 871 points each).
        "pareto": {c: {**d, "points": [q for q in d["points"] if q["on_front"] or not q["routed"]]}
                   for c, d in ((c, comp.to_dict()) for c, comp in comparisons.items())},
    }
    path = Path(args.results).expanduser() if args.results else cache.root / "mpnet_pair.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nall figures: {path}")
    if args.figures:
        figure(Path(args.figures), comparisons, measured, measured_acc, acc, n)
    return 0


def report(args, acc, target, tau, chosen, measured, measured_acc, comparisons, sweeps, n) -> None:
    print("\n== measured time per sentence (median of full passes) ==")
    for k, v in tau.items():
        print(f"  {k:<22} {1e3 * v:7.2f} ms  ({1 / v:6.1f} sentences/s)  accuracy {acc[k]:.4f}")
    for cheap in CHEAP:
        print(f"\n== {cheap} -> {FALLBACK}: bar {target:.4f} ==")
        for label, r in chosen[cheap]["rows"].items():
            key = f"{cheap} -> {FALLBACK}, {label}"
            m = measured.get(key)
            extra = (f" (coverage {r['range_coverage'][0]:.1%}-{r['range_coverage'][1]:.1%}, holds in "
                     f"{r['holds_share']:.0%} of fold assignments)" if "holds_share" in r else "")
            print(f"  {label:<36} coverage {r['coverage']:.1%}, system acc {r['system_accuracy']:.4f} "
                  f"({r['relative']:.2%} of MPNet){extra}")
            if m is not None:
                print(f"  {'':<36} measured: {np.median(m['ratio_to_fallback']):.3f}x MPNet's time "
                      f"({min(m['ratio_to_fallback']):.3f}-{max(m['ratio_to_fallback']):.3f}), "
                      f"accuracy of the run {measured_acc[key]:.4f}")
        print("  " + comparisons[cheap].summary)


def figure(out: Path, comparisons: dict[str, Any], measured: dict[str, Any], measured_acc: dict[str, float],
           acc: dict[str, float], n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(comparisons), figsize=(11, 4.0), layout="constrained", sharey=True)
    for ax, (cheap, comp) in zip(np.atleast_1d(axes), comparisons.items()):
        comp.plot(ax=ax, annotate=False)
        # The chosen operating points as actually run (wall clock of the routed run, its accuracy).
        for (key, m), marker in zip(((k, v) for k, v in measured.items() if k.startswith(cheap)), "xP+"):
            ax.plot(1e3 * float(np.median(m["seconds"])) / n, measured_acc[key], marker, color="k", ms=8,
                    label="run: " + key.split(", ", 1)[1])
        ax.legend(fontsize=6.5, loc="lower right")
        ax.set_title(f"{cheap} -> {FALLBACK}: " + ("routing on the front" if comp.routing_on_front
                                                    else "routing NOT on the front"), fontsize=9)
        ax.set_ylim(min(acc.values()) - 0.01, max(acc.values()) + 0.006)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "sst2_mpnet_pareto.png", dpi=80)
    plt.close(fig)
    print(f"  wrote {out / 'sst2_mpnet_pareto.png'}")


if __name__ == "__main__":
    warnings.filterwarnings("ignore", message=".*truncated.*")
    raise SystemExit(main())
