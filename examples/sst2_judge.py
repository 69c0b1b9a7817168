"""Does a learned correctness judge beat max-probability routing on the SST-2 reference pair?

Cheap model: the 80%-pruned MiniLM; fallback: the dense MiniLM (the pair of
``examples/sst2_routing.py``, whose cached model outputs this script reuses: run that script
once first, or this one computes the same outputs through it). For each routing score the
script reports, on SST-2 dev (872 sentences):

* the share of dev the cheap model can answer while the routed system keeps at least 99.5% of
  the dense model's accuracy, with the best threshold *for that score on dev* (an oracle
  threshold, the same yardstick as the 83.1% quoted for max-probability), and
* the AURC of the score as a predictor of the cheap model's correctness (lower is better).

Scores compared: max-probability; max-probability with a threshold per predicted class (the best
pair on dev); a :class:`~confroute.judge.CorrectnessJudge` trained on the held-out train slice
(4,000 sentences the models *were* fine-tuned on) and applied to dev; and judges cross-fitted on
dev (5 folds: every dev sentence is scored by a judge that never saw it), averaged over 20 fold
assignments, with plain features, with TF-IDF probabilities as extra features, and with the
"fallback helps" target.

Run from the repository root::

    .venv/bin/python examples/sst2_judge.py
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from confroute import Predictions
from confroute.evaluation import threshold_sweep
from confroute.io import load_texts
from confroute.judge import CorrectnessJudge, cross_fit
from confroute.metrics import aurc

HERE = Path(__file__).resolve().parent


def _routing_module() -> Any:
    spec = importlib.util.spec_from_file_location("sst2_routing", HERE / "sst2_routing.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sst2_routing"] = mod
    spec.loader.exec_module(mod)
    return mod


def load_outputs(argv: list[str] | None = None) -> dict[str, Any]:
    """Model outputs on dev and the train slice, from (or into) sst2_routing's cache."""
    r = _routing_module()
    args = r.parse_args(argv or [])
    paths = r.resolve_inputs(args)
    cache = r.Cache(Path(args.cache_dir).expanduser())
    models = r.Models(paths, cache)
    rng = np.random.default_rng(args.seed)
    dev_texts, dev_y = load_texts(paths["dev"])
    train_texts, train_y = load_texts(paths["train"])
    order = rng.permutation(len(train_texts))
    sl, rest = np.sort(order[: args.train_slice]), np.sort(order[args.train_slice:])
    sl_texts, sl_y = [train_texts[i] for i in sl], train_y[sl]
    k_dev, k_sl = r.fingerprint(dev_texts), r.fingerprint(sl_texts)
    out = {
        "dev_texts": dev_texts, "dev_y": np.asarray(dev_y), "sl_texts": sl_texts, "sl_y": np.asarray(sl_y),
        "sp_dev": cache.logits("sparse-dev", r.fingerprint(paths["sparse"], k_dev, 64),
                               lambda: models.get("sparse_ds").predict(dev_texts)),
        "sp_sl": cache.logits("sparse-slice", r.fingerprint(paths["sparse"], k_sl, 64),
                              lambda: models.get("sparse_ds").predict(sl_texts)),
        "de_dev": cache.logits("dense-dev", r.fingerprint(paths["dense"], k_dev),
                               lambda: models.get("dense_hf").predict(dev_texts)),
        "de_sl": cache.logits("dense-slice", r.fingerprint(paths["dense"], k_sl),
                              lambda: models.get("dense_hf").predict(sl_texts)),
    }
    tfidf_key = r.fingerprint(paths["train"], args.seed, args.train_slice)
    tfidf_model = models.tfidf([train_texts[i] for i in rest], train_y[rest], tfidf_key)
    from confroute import SklearnPredictor

    tfidf = SklearnPredictor(tfidf_model, name="tfidf", classes=["NEGATIVE", "POSITIVE"])
    out["tf_dev"] = cache.logits("tfidf-dev", r.fingerprint(tfidf_key, k_dev),
                                 lambda: tfidf.predict(dev_texts))
    return out


def coverage_at(scores: np.ndarray, pc: np.ndarray, fc: np.ndarray, target: float) -> float:
    """Largest share the cheap model answers with system accuracy >= target (oracle threshold)."""
    sw = threshold_sweep(scores, pc, fc)
    ok = sw.system_correct >= target * sw.n - 1e-9
    return float(sw.n_accepted[ok].max() / sw.n)


def per_class_coverage_at(scores: np.ndarray, pred: np.ndarray, pc: np.ndarray, fc: np.ndarray,
                          target: float) -> tuple[float, tuple[float, ...]]:
    """Best coverage over every pair of per-class thresholds (binary task), oracle.

    System correct answers and accepted counts add up over predicted classes, so each class is
    swept on its own and the two sweeps are combined by broadcasting."""
    n = scores.size
    sweeps = [threshold_sweep(scores[pred == c], pc[pred == c], fc[pred == c]) for c in (0, 1)]
    ok = sweeps[0].system_correct[:, None] + sweeps[1].system_correct[None, :]
    m = sweeps[0].n_accepted[:, None] + sweeps[1].n_accepted[None, :]
    m = np.where(ok >= target * n - 1e-9, m, -1)
    i, j = np.unravel_index(int(np.argmax(m)), m.shape)
    return float(m[i, j] / n), (float(sweeps[0].thresholds[i]), float(sweeps[1].thresholds[j]))


def main() -> int:
    warnings.filterwarnings("ignore")
    d = load_outputs(sys.argv[1:])
    y, sp, de, tf = d["dev_y"], d["sp_dev"], d["de_dev"], d["tf_dev"]
    pc, fc = sp.labels == y, de.labels == y
    pcs, fcs = d["sp_sl"].labels == d["sl_y"], d["de_sl"].labels == d["sl_y"]
    target = 0.995 * fc.mean()
    texts = d["dev_texts"]
    n = len(texts)
    print(f"SST-2 dev: {n} sentences; dense {fc.mean():.4f}, sparse {pc.mean():.4f}; "
          f"target system accuracy {target:.4f} (99.5% of dense)")
    print(f"train slice: sparse {pcs.mean():.4f} ({(~pcs).sum()} errors), dense {fcs.mean():.4f} "
          "(both models were fine-tuned on train)")
    rows: list[tuple[str, str, str]] = []

    mp = sp.probs.max(axis=1)
    rows.append(("max-probability", f"{coverage_at(mp, pc, fc, target):.1%}", f"{aurc(mp, pc):.4f}"))
    cov_pc, thr = per_class_coverage_at(mp, sp.labels, pc, fc, target)
    rows.append((f"max-probability, per-class thresholds {thr[0]:.4f} / {thr[1]:.4f}", f"{cov_pc:.1%}", "-"))

    for name, judge in (("logistic", CorrectnessJudge()), ("gradient boosting", CorrectnessJudge("hgb"))):
        judge.fit(d["sp_sl"], d["sl_texts"], pcs, fallback_correct=fcs)
        s = judge.score_predictions(sp, texts)
        rows.append((f"judge ({name}) trained on the train slice", f"{coverage_at(s, pc, fc, target):.1%}",
                     f"{aurc(s, pc):.4f}"))

    idx = np.arange(n)

    def tfidf_features(ix: Any) -> np.ndarray:
        ix = np.asarray(ix)
        return np.c_[tf.probs[ix, 1], (tf.labels[ix] == sp.labels[ix]).astype(float)]

    variants = (
        ("judge (logistic) cross-fitted on dev", CorrectnessJudge(), texts),
        ("judge (logistic) + TF-IDF features, cross-fitted on dev",
         CorrectnessJudge(extra_features=tfidf_features), idx),
        ("judge (logistic, target fallback_helps), cross-fitted on dev",
         CorrectnessJudge(target="fallback_helps"), texts),
    )
    for name, judge, inputs in variants:
        covs, aurcs = [], []
        for seed in range(20):
            cf = cross_fit(judge, sp, inputs, pc, fallback_correct=fc, n_splits=5, random_state=seed)
            covs.append(coverage_at(cf.oof_scores, pc, fc, target))
            aurcs.append(aurc(cf.oof_scores, pc))
        rows.append((name, f"{np.mean(covs):.1%} ({min(covs):.1%}-{max(covs):.1%})", f"{np.mean(aurcs):.4f}"))

    width = max(len(r[0]) for r in rows)
    print(f"\n| {'routing score':<{width}} | coverage at 99.5% of dense | AURC |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for r in rows:
        print(f"| {r[0]:<{width}} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
