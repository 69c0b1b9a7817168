"""SST-2: certify "system accuracy >= 99.5% of the dense model's" with paired bounds, and label budgets.

Uses the cached dev-set outputs of the study (``examples/sst2_routing.py``; computed here with the
same cache keys when absent: sparse MiniLM on DeepSparse, one core; dense MiniLM through the
Hugging Face pipeline, one thread). With two classes the max-probability ranking does not change
under temperature scaling, so the raw scores give the same certificates as calibrated ones.

1. Chosen on all of dev (872 sentences), delta = 0.05: the certified coverage of every paired
   bound, against the unpaired Clopper–Pearson bound on the system's accuracy.
2. Cross-fitted: 5 folds x 20 random fold assignments; certify on 4 folds, apply the threshold to
   the fifth; report the held-out coverage and how often the assembled system keeps 99.5%.
3. Label budget: labels the paired certificate reads (disagreements up to the first failing
   candidate; all disagreements) against a full Clopper–Pearson on every input for the same
   certified coverage, and the planner's numbers for larger coverages.

Run from the repository root (``--cache-dir`` as for the study)::

    NM_DISABLE_ANALYTICS=1 python examples/sst2_certify.py [--cache-dir .cache/sst2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sst2_routing as study  # noqa: E402  (the study's cache, paths and cross-fit helper)

from confroute import load_texts  # noqa: E402
from confroute.selection.disagreements import certify_from_disagreements, needs_label  # noqa: E402
from confroute.selection.planner import plan_labels  # noqa: E402
from confroute.selection.relative import certify_relative_accuracy  # noqa: E402
from confroute import ThresholdWarning, choose_thresholds  # noqa: E402

DELTA = 0.05
RELATIVE = 0.995


def outputs(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sparse model's scores, both models' predictions and the labels on dev (cached)."""
    sargs = study.parse_args(["--cache-dir", args.cache_dir] + (["--shared", args.shared] if args.shared else []))
    paths = study.resolve_inputs(sargs)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    cache = study.Cache(Path(sargs.cache_dir).expanduser())
    models = study.Models(paths, cache)
    texts, y = load_texts(paths["dev"])
    key = study.fingerprint(texts)
    sp = cache.logits("sparse-dev", study.fingerprint(paths["sparse"], key, 64),
                      lambda: models.get("sparse_ds").predict(texts))
    de = cache.logits("dense-dev", study.fingerprint(paths["dense"], key),
                      lambda: models.get("dense_hf").predict(texts))
    return sp.probs.max(1), sp.probs.argmax(1), de.probs.argmax(1), np.asarray(y)


def unpaired_choice(s: np.ndarray, pc: np.ndarray, fc: np.ndarray) -> float:
    """The unpaired comparison: a Clopper-Pearson guarantee on the system's accuracy against the
    fallback's accuracy on this data (``target_system_accuracy``), not the paired certificate."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        return choose_thresholds(study.evaluation_of(s, pc, fc), target_system_accuracy=RELATIVE * fc.mean(),
                                 delta=DELTA).threshold


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", default=os.environ.get("CONFROUTE_CACHE", "~/.cache/confroute/sst2"))
    ap.add_argument("--shared", default=None)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--out", default=str(study.REPO / "benchmarks/results/sst2_certify.json"))
    args = ap.parse_args(argv)
    s, ps, pd, y = outputs(args)
    pc, fc = ps == y, pd == y
    n = s.size
    stages = np.stack([pc, fc])
    out: dict[str, Any] = {"n": n, "delta": DELTA, "relative": RELATIVE, "accuracy": {
        "sparse": float(pc.mean()), "dense": float(fc.mean())}, "disagreements": int((ps != pd).sum())}

    # 1. On all of dev.
    whole: dict[str, Any] = {}
    for bound in ("cp_losses", "conditional", "betting"):
        c = certify_relative_accuracy(s, stages, epsilon=1 - RELATIVE, kind="ratio", delta=DELTA, bound=bound,
                                      grid=128)
        whole[bound] = c.to_dict()
    t = unpaired_choice(s, pc, fc)
    whole["unpaired"] = {"threshold": t if np.isfinite(t) else None, "coverage": float((s >= t).mean())}
    out["all_dev"] = whole

    # 2. Cross-fitted: certify on K-1 folds, apply to the held-out fold.
    def fit_apply(bound: str) -> Any:
        def f(sel: np.ndarray, app: np.ndarray) -> np.ndarray:
            if bound == "unpaired":
                return s[app] >= unpaired_choice(s[sel], pc[sel], fc[sel])
            c = certify_relative_accuracy(s[sel], stages[:, sel], epsilon=1 - RELATIVE, kind="ratio",
                                          delta=DELTA, bound=bound, grid=128)
            return s[app] >= c.threshold
        return f

    cross: dict[str, Any] = {}
    for bound in ("cp_losses", "conditional", "betting", "unpaired"):
        cov, holds, rel = [], [], []
        for seed in range(args.seeds):
            keep = study.crossfit(n, args.folds, seed, fit_apply(bound))
            system = np.where(keep, pc, fc).mean()
            cov.append(keep.mean())
            rel.append(system / fc.mean())
            holds.append(system >= RELATIVE * fc.mean() - 1e-12)
        cross[bound] = {"coverage_mean": float(np.mean(cov)), "coverage_min": float(np.min(cov)),
                        "coverage_max": float(np.max(cov)), "relative_mean": float(np.mean(rel)),
                        "relative_min": float(np.min(rel)), "relative_max": float(np.max(rel)),
                        "holds_share": float(np.mean(holds))}
    out["crossfit"] = cross | {"folds": args.folds, "seeds": args.seeds}

    # 3. Label budget.
    ask = needs_label(np.stack([ps, pd]))
    y_part = np.ma.masked_all(n, dtype=int)
    y_part[ask] = y[ask]
    eps_abs = (1 - RELATIVE) * float(fc.mean())
    from_dis = certify_from_disagreements(np.stack([ps, pd]), y_part, scores=s, epsilon=eps_abs, kind="difference",
                                          delta=DELTA)
    best = whole["cp_losses"]
    order = np.argsort(-s, kind="stable")
    plans = []
    for cov_goal in (best["coverage"], 0.65, 0.7, 0.8):
        top = order[: max(1, int(round(cov_goal * n)))]
        d = float((ps[top] != pd[top]).sum()) / n
        loss = float((~pc[top] & fc[top]).sum()) / n
        gain = float((pc[top] & ~fc[top]).sum()) / n
        p = plan_labels(d, loss, gain, epsilon=1 - RELATIVE, kind="ratio",
                        reference_accuracy=float(fc.mean()), delta=DELTA)
        plans.append({"coverage": cov_goal, "disagreements_per_input": d, "losses_per_input": loss,
                      "gains_per_input": gain} | p.to_dict())
    out["labels"] = {
        "disagreements_in_dev": int(ask.sum()),
        "read_by_certificate": best["labels_used"],
        "certified_coverage": best["coverage"],
        "from_disagreement_labels_only": from_dis.to_dict() | {"epsilon_absolute": eps_abs},
        "plans": plans,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
