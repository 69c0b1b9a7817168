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
pair on dev); a :class:`~confroute.calibration.judge.CorrectnessJudge` trained on the held-out train slice
(4,000 sentences the models *were* fine-tuned on) and applied to dev; and judges cross-fitted on
dev (5 folds: every dev sentence is scored by a judge that never saw it), averaged over 20 fold
assignments, with plain features, with TF-IDF probabilities as extra features, and with the
"fallback helps" target.

Added for issue 7: the cheap model's own hidden state as judge features. A copy of the cheap
model's ONNX graph with the pooled [CLS] vector (the input of the classification layer) as a
second output is written into the cache (:func:`confroute.export.add_hidden_output`; the shared
model is only read) and run with ONNX Runtime (one thread, dynamic shapes, confroute's
tokenisation, 64 tokens as the DeepSparse run) on dev and on the train slice; the 384-d vectors
are cached. Judges see them PCA-reduced inside their own pipeline (fitted on the judge's training
folds only), with logistic regression (C chosen by inner 3-fold CV) or gradient boosting, for
both targets, trained on the train slice or cross-fitted on dev.

Besides the oracle coverage (threshold chosen on all of dev, an upper bound), every score gets
an off-fold threshold: for each fold, the threshold is chosen on the other folds' scores (for a
cross-fitted judge: their out-of-fold scores) by ``choose_thresholds(..., delta=None,
rule="first_failure")`` on an :class:`~confroute.Evaluation` of those scores, and applied to the
held-out fold; coverage and system accuracy are then counted over all of dev. The figures go to ``benchmarks/results/sst2_judge.json``.

Run from the repository root::

    .venv/bin/python examples/sst2_judge.py
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from confroute import Predictions, choose_thresholds, evaluate
from confroute.calibration.judge import CorrectnessJudge, cross_fit
from confroute.calibration.metrics import aurc
from confroute.evaluation.evaluate import threshold_sweep
from confroute.integrations.io import load_texts

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "benchmarks" / "results" / "sst2_judge.json"
SEQUENCE_LENGTH = 64  # what the cached DeepSparse outputs were computed with
N_BASE = 11  # judge_features columns before the extra ones (binary task)


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
    out["pooled_model"] = pooled_model(r, paths["sparse"], cache.root)
    out["emb_dev"], out["ort_dev"] = pooled_outputs(r, out["pooled_model"], cache.root, "dev", dev_texts)
    out["emb_sl"], out["ort_sl"] = pooled_outputs(r, out["pooled_model"], cache.root, "slice", sl_texts)
    return out


def pooled_model(r: Any, sparse: Any, root: Path) -> Path:
    """A copy of the cheap model's ONNX graph that also outputs the pooled [CLS] vector."""
    if not isinstance(sparse, Path):
        raise SystemExit(f"the hidden-state features need a local ONNX directory for the cheap model, got {sparse}")
    out = root / f"sparse-pooled-onnx-{r.fingerprint(sparse)}"
    if not (out / "model.onnx").exists():
        from confroute.export import add_hidden_output

        res = add_hidden_output(sparse, out)
        print(f"  wrote {res.onnx_path}: output {res.output_name!r} = {res.tensor} ({res.hidden_size}-d); "
              f"max |logit diff| vs the original graph {res.max_abs_diff:.1e}")
    return out


def pooled_outputs(r: Any, model_dir: Path, root: Path, tag: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled vectors and logits of the cheap model (ONNX Runtime, 1 thread), cached as npz."""
    path = root / f"sparse-pooled-{tag}-{r.fingerprint(model_dir, r.fingerprint(texts), SEQUENCE_LENGTH)}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["pooled"], z["logits"]
    import onnxruntime as ort

    from confroute.predictors._text import TextEncoder, check_texts

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    encoder = TextEncoder(model_dir, max_length=SEQUENCE_LENGTH, source="sparse-pooled")
    names = [i.name for i in session.get_inputs()]
    t0 = time.perf_counter()
    pooled, logits = [], []
    texts = check_texts(texts, "sparse-pooled")
    for i in range(0, len(texts), 32):
        arrays = encoder.encode(texts[i:i + 32]).arrays
        lg, pl = session.run(["logits", "pooled"], {k: arrays[k] for k in names})
        logits.append(lg)
        pooled.append(pl)
    out = np.concatenate(pooled).astype(np.float32), np.concatenate(logits).astype(np.float32)
    print(f"  computed pooled vectors on {tag} ({len(texts)} inputs, {time.perf_counter() - t0:.0f} s) -> {path.name}")
    np.savez_compressed(path, pooled=out[0], logits=out[1])
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
    return float(m[i, j] / n), (float(sweeps[0].row_thresholds[i]), float(sweeps[1].row_thresholds[j]))


class Embedding:
    """``extra_features`` for a judge: the cached pooled vector of each text (picklable)."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.rows: dict[str, np.ndarray] = {}
        for t, v in zip(texts, vectors):
            self.rows.setdefault(t, v)

    def __call__(self, inputs: Any) -> np.ndarray:
        return np.stack([self.rows[t] for t in inputs])


def embedding_model(kind: str, dims: int) -> Any:
    """Judge estimator: base features standardised, pooled vector standardised + PCA(dims),
    then logistic regression (C by inner 3-fold CV on log-loss, 5 values) or gradient boosting. PCA and
    scalers are fitted on the judge's own training data only."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pre = ColumnTransformer([
        ("base", StandardScaler(), slice(0, N_BASE)),
        ("pooled", make_pipeline(StandardScaler(), PCA(dims, random_state=0)), slice(N_BASE, None)),
    ])
    if kind == "logistic":
        clf = make_pipeline(StandardScaler(), LogisticRegressionCV(
            Cs=np.logspace(-3, 1, 5), cv=3, scoring="neg_log_loss", max_iter=2000))
    else:
        clf = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=7,
                                             min_samples_leaf=20, l2_regularization=1.0, random_state=0)
    return make_pipeline(pre, clf)


def off_fold(scores: np.ndarray, folds: np.ndarray, pc: np.ndarray, fc: np.ndarray,
             relative: float) -> tuple[float, float]:
    """Coverage and system accuracy / dense on dev when each fold's threshold is chosen on the
    other folds' scores (empirical, first failure from the strict end) for ``relative`` x the
    dense accuracy on those folds."""
    accepted = correct = 0
    # Only correctness matters here: label every input 1, a right answer 1, a wrong one 0.
    one = np.ones(scores.size, dtype=np.int64)
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        ev = evaluate(labels=one[tr], primary=pc[tr].astype(np.int64), fallback=fc[tr].astype(np.int64),
                      scores=scores[tr])
        c = choose_thresholds(ev, target_system_accuracy=relative * fc[tr].mean(), delta=None,
                              rule="first_failure")
        keep = scores[te] >= c.threshold
        accepted += int(keep.sum())
        correct += int(np.where(keep, pc[te], fc[te]).sum())
    n = scores.size
    return accepted / n, correct / n / fc.mean()


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def main() -> int:
    warnings.filterwarnings("ignore")
    t_start = time.perf_counter()
    d = load_outputs(sys.argv[1:])
    # The SST-2 files label sentences 0/1, the models' column indices (NEGATIVE, POSITIVE);
    # ``labels`` are the class names, so compare column indices.
    y, sp, de, tf = d["dev_y"], d["sp_dev"], d["de_dev"], d["tf_dev"]
    pc, fc = sp.label_index == y, de.label_index == y
    pcs, fcs = d["sp_sl"].label_index == d["sl_y"], d["de_sl"].label_index == d["sl_y"]
    relative = 0.995
    target = relative * fc.mean()
    texts = d["dev_texts"]
    n = len(texts)
    seeds = range(20)
    print(f"SST-2 dev: {n} sentences; dense {fc.mean():.4f}, sparse {pc.mean():.4f}; "
          f"target system accuracy {target:.4f} (99.5% of dense); the models disagree on {(pc != fc).sum()}")
    print(f"train slice: sparse {pcs.mean():.4f} ({(~pcs).sum()} errors), dense {fcs.mean():.4f} "
          "(both models were fine-tuned on train)")
    print(f"pooled vectors (ONNX Runtime): max |logit diff| vs the cached DeepSparse outputs "
          f"{max(np.abs(d['ort_dev'] - sp.logits).max(), np.abs(d['ort_sl'] - d['sp_sl'].logits).max()):.1e}")
    emb = Embedding(texts + d["sl_texts"], np.concatenate([d["emb_dev"], d["emb_sl"]]))

    # The same 20 fold assignments (stratified on the cheap model's correctness) for the off-fold
    # thresholds of fixed scores; cross-fitted judges use their own folds.
    from sklearn.model_selection import StratifiedKFold

    fixed_folds = []
    for seed in seeds:
        f = np.empty(n, dtype=np.int64)
        for k, (_, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(n), pc)):
            f[te] = k
        fixed_folds.append(f)

    rows: list[dict[str, Any]] = []

    def fixed_row(name: str, s: np.ndarray, with_aurc: bool = True) -> None:
        off = [off_fold(s, f, pc, fc, relative) for f in fixed_folds]
        rows.append({"score": name, "oracle_coverage": {"mean": coverage_at(s, pc, fc, target)},
                     "aurc": {"mean": aurc(s, pc)} if with_aurc else None,
                     "off_fold_coverage": summary([o[0] for o in off]),
                     "off_fold_relative": summary([o[1] for o in off]),
                     "off_fold_holds": float(np.mean([o[1] >= relative - 1e-12 for o in off]))})

    def cross_row(name: str, judge: CorrectnessJudge, inputs: Any) -> None:
        t0 = time.perf_counter()
        covs, aurcs, off = [], [], []
        for seed in seeds:
            cf = cross_fit(judge, sp, inputs, pc, fallback_correct=fc, n_splits=5, random_state=seed)
            covs.append(coverage_at(cf.oof_scores, pc, fc, target))
            aurcs.append(aurc(cf.oof_scores, pc))
            off.append(off_fold(cf.oof_scores, cf.folds, pc, fc, relative))
        rows.append({"score": name, "oracle_coverage": summary(covs), "aurc": summary(aurcs),
                     "off_fold_coverage": summary([o[0] for o in off]),
                     "off_fold_relative": summary([o[1] for o in off]),
                     "off_fold_holds": float(np.mean([o[1] >= relative - 1e-12 for o in off])),
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"  {name}: {time.perf_counter() - t0:.0f} s", flush=True)

    mp = sp.probs.max(axis=1)
    fixed_row("max-probability", mp)
    cov_pc, thr = per_class_coverage_at(mp, sp.label_index, pc, fc, target)
    rows.append({"score": f"max-probability, per-class thresholds {thr[0]:.3f} / {thr[1]:.3f} (both chosen on dev)",
                 "oracle_coverage": {"mean": cov_pc}, "aurc": None, "off_fold_coverage": None})

    slice_judges = (
        ("judge (logistic) trained on the train slice", CorrectnessJudge()),
        ("judge (gradient boosting) trained on the train slice", CorrectnessJudge("hgb")),
        ("judge (logistic) + pooled state (PCA 32), trained on the train slice",
         CorrectnessJudge(embedding_model("logistic", 32), extra_features=emb)),
        ("judge (logistic, fallback_helps) + pooled state (PCA 32), trained on the train slice",
         CorrectnessJudge(embedding_model("logistic", 32), target="fallback_helps", extra_features=emb)),
        ("judge (gradient boosting) + pooled state (PCA 32), trained on the train slice",
         CorrectnessJudge(embedding_model("hgb", 32), extra_features=emb)),
    )
    for name, judge in slice_judges:
        judge.fit(d["sp_sl"], d["sl_texts"], pcs, fallback_correct=fcs)
        assert judge.feature_names_[N_BASE - 1] == "log1p_words"
        fixed_row(name, judge.score_predictions(sp, texts))

    idx = np.arange(n)

    def tfidf_features(ix: Any) -> np.ndarray:
        ix = np.asarray(ix)
        return np.c_[tf.probs[ix, 1], (tf.label_index[ix] == sp.label_index[ix]).astype(float)]

    variants = (
        ("judge (logistic) cross-fitted on dev", CorrectnessJudge(), texts),
        ("judge (logistic) + TF-IDF features, cross-fitted on dev",
         CorrectnessJudge(extra_features=tfidf_features), idx),
        ("judge (logistic, fallback_helps), cross-fitted on dev",
         CorrectnessJudge(target="fallback_helps"), texts),
        *((f"judge (logistic) + pooled state (PCA {k}), cross-fitted on dev",
           CorrectnessJudge(embedding_model("logistic", k), extra_features=emb), texts) for k in (16, 32, 64)),
        ("judge (logistic, fallback_helps) + pooled state (PCA 32), cross-fitted on dev",
         CorrectnessJudge(embedding_model("logistic", 32), target="fallback_helps", extra_features=emb), texts),
        ("judge (gradient boosting) + pooled state (PCA 32), cross-fitted on dev",
         CorrectnessJudge(embedding_model("hgb", 32), extra_features=emb), texts),
        ("judge (gradient boosting, fallback_helps) + pooled state (PCA 32), cross-fitted on dev",
         CorrectnessJudge(embedding_model("hgb", 32), target="fallback_helps", extra_features=emb), texts),
    )
    for name, judge, inputs in variants:
        cross_row(name, judge, inputs)

    def fmt(r: dict[str, Any] | None, key: str, spec: str) -> str:
        v = None if r is None else r.get(key)
        if not v:
            return "–"
        if "min" in v and v["min"] != v["max"]:
            return f"{v['mean']:{spec}} ({v['min']:{spec}}–{v['max']:{spec}})"
        return f"{v['mean']:{spec}}"

    width = max(len(r["score"]) for r in rows)
    print(f"\n| {'routing score':<{width}} | coverage at 99.5% of dense, oracle threshold | AURC | "
          "coverage, off-fold threshold | system acc / dense, off-fold | holds |")
    print(f"|{'-' * (width + 2)}|---|---|---|---|---|")
    for r in rows:
        holds = "–" if r.get("off_fold_coverage") is None else f"{r['off_fold_holds']:.0%}"
        print(f"| {r['score']:<{width}} | {fmt(r, 'oracle_coverage', '.1%')} | {fmt(r, 'aurc', '.4f')} | "
              f"{fmt(r, 'off_fold_coverage', '.1%')} | {fmt(r, 'off_fold_relative', '.2%')} | {holds} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "n_dev": n, "dense_accuracy": float(fc.mean()), "sparse_accuracy": float(pc.mean()),
        "models_disagree": int((pc != fc).sum()), "relative_target": relative, "folds": 5,
        "fold_assignments": len(seeds), "rows": rows,
        "runtime_s": round(time.perf_counter() - t_start, 1),
    }, indent=2))
    print(f"\nwrote {RESULTS} ({time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
