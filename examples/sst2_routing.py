"""The SST-2 routing study, end to end: sparse MiniLM on DeepSparse first, dense MiniLM as fallback.

What it does (docs/sst2-study.md reports the figures):

1. Runs the cheap model (80%-pruned MiniLM, DeepSparse, static shapes 32 x 64 tokens, one core)
   and the fallback (dense MiniLM through the Hugging Face pipeline, one thread) on SST-2 dev and
   on a held-out slice of SST-2 train, and caches their logits (``--cache-dir``).
2. Temperature-scales the cheap model on data that is not the evaluation data.
3. Chooses the routing threshold for "system accuracy >= 99.5% of the dense model's" in two ways
   that never look at the sentence being scored: on the train slice, and by cross-fitting on dev
   (K folds: choose on K-1, apply to the held-out fold). Both models were fine-tuned on SST-2
   train, so their confidence on the train slice is optimistic; the two methods show what that
   does. The oracle (threshold chosen on dev itself) is reported for scale only.
4. Prints the study's table (threshold, share kept by the cheap model, accuracy on it, system
   accuracy, cost and savings) with the study's assumed prices and with prices from the measured
   throughput of the two backends on this machine.
5. Adds a three-stage cascade: TF-IDF + logistic regression (trained on SST-2 train minus the
   slice) in front of the sparse model, with both thresholds grid-searched on held-out data.
6. Times the routed systems for real (wall clock, repeated, ranges reported) against the dense
   model on everything, with the dense model on DeepSparse (exported to ONNX into the cache) and
   through the Hugging Face pipeline.

Run from the repository root, offline, after ``bash tools/run.sh test`` has set up ``.venv``::

    .venv/bin/python examples/sst2_routing.py                       # ~10 min the first time
    .venv/bin/python examples/sst2_routing.py --figures docs/img    # also rewrite the figures

Models and data default to ``../shared`` (or ``$CONFROUTE_SHARED``); see ``--help`` and the
message printed when they are missing for the public equivalents.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")

import numpy as np

from confroute import CostModel, StageCost, load_texts
from confroute.core.types import Predictions, softmax
from confroute.calibration.calibrators import TemperatureScaler
from confroute import (AccuracyThresholdDisplay, CostAccuracyDisplay, CostThresholdDisplay, ReliabilityDisplay,
                       ThresholdWarning, choose_thresholds)
from confroute.evaluation.evaluate import Evaluation, evaluate, threshold_sweep

REPO = Path(__file__).resolve().parents[1]
STUDY = {
    "dense_accuracy": 0.9048,  # "no routing: 90.48% on 872 sentences"
    "coverage_at_0.8": 0.97,
    "claim": "70% routed to the sparse model keeps 97% of the accuracy and saves over 50%",
}
STUDY_PER_SAMPLE = (0.001, 0.005)  # $ per input, sparse vs dense
STUDY_HOURLY = ((0.50, 100.0), (1.50, 10.0))  # CPU $0.50/h at 100/s vs GPU $1.50/h at 10/s
CPU_PRICE = 0.50  # this machine runs both models: same hourly price, measured throughputs
TABLE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)
NO_SHARED_HELP = """\
The study's models and data were not found at {where}.

Offline (this repository's setup): point --shared at the folder holding data/sst2/{{train,dev}}.tsv
and models/minilm-sst2-{{pruned80,dense}} (or set CONFROUTE_SHARED).

Online, with public models (downloads; the figures will differ from docs/sst2-study.md):
  * SST-2 as TSV: python -c "from datasets import load_dataset as l; [l('glue','sst2',split=s)\
.to_pandas()[['sentence','label']].to_csv(f'{{s}}.tsv',sep='\\t',index=False) for s in ('train','validation')]"
    then pass --train train.tsv --dev validation.tsv
  * the study's sparse model from SparseZoo (DeepSparse downloads the stub):
      --sparse zoo:nlp/sentiment_analysis/distilbert-none/pytorch/huggingface/sst2/pruned80_quant-none-vnni
  * a dense SST-2 model from the Hugging Face Hub (through the pipeline):
      --dense hub:distilbert-base-uncased-finetuned-sst-2-english
    and for the DeepSparse timing of the dense model, export it first:
      confroute export <local dense model dir> ~/.cache/confroute/sst2/dense-onnx
  (with a Hub id the script leaves the network on; unset HF_HUB_OFFLINE if you set it yourself).
"""


# --------------------------------------------------------------------------- arguments and paths
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    default_shared = os.environ.get("CONFROUTE_SHARED") or str(REPO.parent / "shared")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", default=default_shared,
                   help="folder with data/ and models/ (default: ../shared or $CONFROUTE_SHARED)")
    p.add_argument("--dev", help="evaluation TSV (default: SHARED/data/sst2/dev.tsv)")
    p.add_argument("--train", help="training TSV (default: SHARED/data/sst2/train.tsv)")
    p.add_argument("--sparse", help="cheap model: ONNX dir or zoo: stub (default: SHARED/models/minilm-sst2-pruned80)")
    p.add_argument("--dense", help="fallback: HF model dir or hub:ORG/NAME (default: SHARED/models/minilm-sst2-dense)")
    p.add_argument("--cache-dir", default=os.environ.get("CONFROUTE_CACHE", "~/.cache/confroute/sst2"),
                   help="model outputs, the dense ONNX export and timings (default: ~/.cache/confroute/sst2)")
    p.add_argument("--train-slice", type=int, default=4000,
                   help="held-out train sentences for calibration and threshold choice (default 4000)")
    p.add_argument("--folds", type=int, default=5, help="folds for cross-fitting on dev (default 5)")
    p.add_argument("--crossfit-seeds", type=int, default=20,
                   help="random fold assignments to average the cross-fit over (default 20)")
    p.add_argument("--relative", type=float, default=0.995,
                   help="system accuracy must stay >= this share of the dense model's (default 0.995)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timing repeats (0: skip timing, reuse the last cached timings)")
    p.add_argument("--figures", metavar="DIR", help="write the study's PNG figures there (e.g. docs/img)")
    p.add_argument("--results", metavar="FILE", help="write all figures as JSON (default: CACHE/results.json)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def resolve_inputs(args: argparse.Namespace) -> dict[str, Any]:
    shared = Path(args.shared).expanduser()
    paths = {
        "dev": args.dev or shared / "data/sst2/dev.tsv",
        "train": args.train or shared / "data/sst2/train.tsv",
        "sparse": args.sparse or shared / "models/minilm-sst2-pruned80",
        "dense": args.dense or shared / "models/minilm-sst2-dense",
    }
    missing = [k for k in ("dev", "train") if not Path(paths[k]).expanduser().exists()]
    missing += [k for k in ("sparse", "dense") if isinstance(paths[k], Path) and not paths[k].exists()]
    if missing:
        print(NO_SHARED_HELP.format(where=shared), file=sys.stderr)
        print(f"missing: {', '.join(f'{k} ({paths[k]})' for k in missing)}", file=sys.stderr)
        raise SystemExit(2)
    return {k: Path(v).expanduser() if isinstance(v, Path) or Path(str(v)).expanduser().exists() else v
            for k, v in paths.items()}


# --------------------------------------------------------------------------- cache
def fingerprint(*parts: Any) -> str:
    """Short hash of model files (size, mtime), texts and settings: a cache key that changes
    when any of them does."""
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, Path) and part.exists():
            files = sorted(part.rglob("*")) if part.is_dir() else [part]
            for f in files:
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
        elif isinstance(part, (list, tuple)):
            for t in part:
                h.update(str(t).encode("utf-8", "replace") + b"\0")
        else:
            h.update(str(part).encode())
    return h.hexdigest()[:12]


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def logits(self, tag: str, key: str, compute: Callable[[], Predictions]) -> Predictions:
        """Cached probabilities + logits of one model on one split."""
        path = self.root / f"{tag}-{key}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                logits = z["logits"] if z["logits"].size else None
                return Predictions(z["probs"], logits, tuple(z["classes"].tolist()) or None)
        t0 = time.perf_counter()
        preds = compute()
        print(f"  computed {tag} ({len(preds)} inputs, {time.perf_counter() - t0:.0f} s) -> {path.name}")
        np.savez_compressed(path, probs=preds.probs,
                            logits=preds.logits if preds.logits is not None else np.empty(0),
                            classes=np.array(preds.classes or ()))
        return preds


# --------------------------------------------------------------------------- models
class Models:
    """Predictors, built on first use (a warm cache needs none of them)."""

    def __init__(self, paths: dict[str, Any], cache: Cache) -> None:
        self.paths, self.cache = paths, cache
        self._made: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._made:
            self._made[name] = getattr(self, f"_make_{name}")()
        return self._made[name]

    def _make_sparse_ds(self) -> Any:
        from confroute import DeepSparsePredictor

        return DeepSparsePredictor(str(self.paths["sparse"]), batch_size=32, num_cores=1,
                                   sequence_length=64, name="sparse")

    def _make_dense_hf(self) -> Any:
        from confroute import HFPipelinePredictor

        return HFPipelinePredictor(str(self.paths["dense"]), batch_size=32, num_threads=1, name="dense")

    def _make_dense_ds(self) -> Any:
        from confroute import DeepSparsePredictor

        return DeepSparsePredictor(str(self.dense_onnx()), batch_size=32, num_cores=1, sequence_length=64,
                                   name="dense-ds")

    def dense_onnx(self) -> Path:
        dense = self.paths["dense"]
        if not isinstance(dense, Path):
            raise SystemExit(f"export {dense} to ONNX first: confroute export <dir> {self.cache.root}/dense-onnx")
        out = self.cache.root / f"dense-onnx-{fingerprint(dense)}"
        if not (out / "model.onnx").exists():
            from confroute.export import export_to_onnx

            r = export_to_onnx(dense, out)
            print(f"  exported the dense model to {r.onnx_path} (max |logit diff| vs PyTorch {r.max_abs_diff:.1e})")
        return out

    def tfidf(self, texts: list[str], labels: np.ndarray, key: str) -> Any:
        path = self.cache.root / f"tfidf-{key}.pkl"
        if path.exists():
            with open(path, "rb") as fh:
                return pickle.load(fh)
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        t0 = time.perf_counter()
        model = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            LogisticRegression(C=4.0, max_iter=2000),
        ).fit(texts, labels)
        print(f"  trained TF-IDF + logistic regression on {len(texts)} train sentences "
              f"({time.perf_counter() - t0:.0f} s)")
        with open(path, "wb") as fh:
            pickle.dump(model, fh)
        return model


# --------------------------------------------------------------------------- threshold choice
def evaluation_of(scores: np.ndarray, pc: np.ndarray, fc: np.ndarray) -> Evaluation:
    """A two-stage :class:`~confroute.Evaluation` whose first stage has these scores and is right
    where ``pc`` says, and whose fallback is right where ``fc`` says (one true class, 0; a wrong
    answer is class 1), so :func:`confroute.choose_thresholds` can run on the study's arrays."""
    n = len(scores)
    return evaluate(labels=np.zeros(n, int), primary=np.where(np.asarray(pc, bool), 0, 1),
                    fallback=np.where(np.asarray(fc, bool), 0, 1), scores=np.asarray(scores, float))


def relative_choice(scores: np.ndarray, pc: np.ndarray, fc: np.ndarray, relative: float,
                    rule: str = "loosest", margin: float = 0.0, delta: float | None = None) -> float:
    """Threshold for "system accuracy on this data >= (relative + margin) x the fallback's".

    ``rule="loosest"``: the loosest threshold that meets it anywhere (``choose_thresholds`` with
    ``target_system_accuracy`` and ``delta=None``, or its guarantee with a ``delta``).
    ``rule="fixed-sequence"``: walk from the strictest threshold to looser ones and stop before
    the first that fails, as fixed-sequence testing does; it cannot jump over a dip to a lucky
    point further down the curve. (The goal is the unpaired ``target_system_accuracy`` at
    ``relative x`` the fallback's accuracy on this data, as the published figures were measured;
    ``target_relative_accuracy`` would be the paired certificate, see examples/sst2_certify.py.)
    """
    goal = min((relative + margin) * fc.mean(), 1 - 1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        c = choose_thresholds(evaluation_of(scores, pc, fc), target_system_accuracy=goal, delta=delta,
                              rule="loosest" if rule == "loosest" else "first_failure")
    return c.threshold


def sequential_two_thresholds(s0: np.ndarray, c0: np.ndarray, s1: np.ndarray, c1: np.ndarray, c2: np.ndarray,
                              relative: float, margin: float = 0.0, grid: int = 60) -> tuple[float, float]:
    """Three stages, one threshold at a time: the sparse stage's by the fixed-sequence rule, then
    the TF-IDF stage's from strict to loose, stopping before the first that breaks the target."""
    t2 = relative_choice(s1, c1, c2, relative, "fixed-sequence", margin)
    keep1 = s1 >= t2
    goal = (relative + margin) * c2.mean()
    t1 = np.inf
    for cand in np.unique(np.quantile(s0, np.linspace(0.0, 1.0, grid)))[::-1]:
        keep0 = s0 >= cand
        if np.where(keep0, c0, np.where(keep1, c1, c2)).mean() < goal - 1e-12:
            break
        t1 = float(cand)
    return t1, t2


def choose_two_thresholds(s0: np.ndarray, c0: np.ndarray, s1: np.ndarray, c1: np.ndarray, c2: np.ndarray,
                          relative: float, tau: Sequence[float], grid: int = 60) -> tuple[float, float]:
    """Grid search for a three-stage cascade: the cheapest (t1, t2) whose system accuracy on this
    data is >= relative x the last stage's. For each t1 the rest is a two-stage sweep, so every
    t2 is tried at once."""
    n = len(s0)
    target = relative * c2.mean() * n
    cands = np.unique(np.r_[np.inf, np.quantile(s0, np.linspace(0.0, 1.0, grid))])
    best = (np.inf, -1.0, np.inf, np.inf)  # cost, correct, t1, t2
    for t1 in cands:
        kept = s0 >= t1
        rest = ~kept
        sw = threshold_sweep(s1[rest], c1[rest], c2[rest])
        correct = c0[kept].sum() + sw.system_correct
        cost = n * tau[0] + rest.sum() * tau[1] + (rest.sum() - sw.n_accepted) * tau[2]
        ok = np.flatnonzero(correct >= target - 1e-9)
        if ok.size:
            i = ok[np.lexsort((-correct[ok], cost[ok]))[0]]
            if (cost[i], -correct[i]) < (best[0], -best[1]):
                best = (float(cost[i]), float(correct[i]), float(t1), float(sw.row_thresholds[i]))
    return best[2], best[3]


def crossfit(n: int, folds: int, seed: int, fit_apply: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Per-input output of ``fit_apply(select_idx, apply_idx)`` with every input in exactly one
    held-out fold: nothing is scored by a rule chosen with its own label."""
    from sklearn.model_selection import KFold

    out: np.ndarray | None = None
    for sel, app in KFold(folds, shuffle=True, random_state=seed).split(np.arange(n)):
        res = np.asarray(fit_apply(sel, app))
        if out is None:
            out = np.empty((n, *res.shape[1:]), dtype=res.dtype)
        out[app] = res
    assert out is not None
    return out


# --------------------------------------------------------------------------- timing
def wall(fn: Callable[..., Any], *args: Any) -> float:
    """Seconds one call of ``fn(*args)`` takes."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def subset(texts: list[str], mask: np.ndarray) -> list[str]:
    return [t for t, m in zip(texts, mask) if m]


# --------------------------------------------------------------------------- the study
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    paths = resolve_inputs(args)
    if isinstance(paths["dense"], Path):
        # Local models only: make sure nothing tries the network. A Hub id needs it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    cache = Cache(Path(args.cache_dir).expanduser())
    models = Models(paths, cache)
    rng = np.random.default_rng(args.seed)
    warnings.filterwarnings("ignore", message=".*truncated.*")

    dev_texts, dev_y = load_texts(paths["dev"])
    # The TSV's labels are 0/1; the models name their classes: labels are matched by value.
    dev_names = np.array(["NEGATIVE", "POSITIVE"])[dev_y]
    train_texts, train_y = load_texts(paths["train"])
    order = rng.permutation(len(train_texts))
    sl, rest = np.sort(order[: args.train_slice]), np.sort(order[args.train_slice :])
    sl_texts, sl_y = [train_texts[i] for i in sl], train_y[sl]
    n = len(dev_texts)
    print(f"SST-2: {n} dev sentences; held-out train slice {len(sl)} of {len(train_texts)} (seed {args.seed})")
    print(f"cache: {cache.root}")

    # 1. Model outputs, cached per model and split.
    k_dev, k_sl = fingerprint(dev_texts), fingerprint(sl_texts)
    sp_dev = cache.logits("sparse-dev", fingerprint(paths["sparse"], k_dev, 64),
                          lambda: models.get("sparse_ds").predict(dev_texts))
    sp_sl = cache.logits("sparse-slice", fingerprint(paths["sparse"], k_sl, 64),
                         lambda: models.get("sparse_ds").predict(sl_texts))
    de_dev = cache.logits("dense-dev", fingerprint(paths["dense"], k_dev),
                          lambda: models.get("dense_hf").predict(dev_texts))
    de_sl = cache.logits("dense-slice", fingerprint(paths["dense"], k_sl),
                         lambda: models.get("dense_hf").predict(sl_texts))
    tfidf_key = fingerprint(paths["train"], args.seed, args.train_slice)
    tfidf_model = models.tfidf([train_texts[i] for i in rest], train_y[rest], tfidf_key)
    from confroute import SklearnPredictor

    tfidf = SklearnPredictor(tfidf_model, name="tfidf", classes=["NEGATIVE", "POSITIVE"])
    tf_dev = cache.logits("tfidf-dev", fingerprint(tfidf_key, k_dev), lambda: tfidf.predict(dev_texts))
    tf_sl = cache.logits("tfidf-slice", fingerprint(tfidf_key, k_sl), lambda: tfidf.predict(sl_texts))

    acc = {name: float(np.mean(p.label_index == dev_y)) for name, p in
           (("sparse", sp_dev), ("dense", de_dev), ("tfidf", tf_dev))}
    print(f"\naccuracy on dev: dense {acc['dense']:.4f}, sparse {acc['sparse']:.4f}, TF-IDF {acc['tfidf']:.4f} "
          f"(study: no routing {STUDY['dense_accuracy']:.2%})")
    print(f"accuracy on the train slice (seen in fine-tuning): dense {np.mean(de_sl.label_index == sl_y):.4f}, "
          f"sparse {np.mean(sp_sl.label_index == sl_y):.4f}, TF-IDF {np.mean(tf_sl.label_index == sl_y):.4f} (held out)")

    # 2. Temperature scaling on the train slice (never on dev).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaler = TemperatureScaler().fit(sp_sl.log_scores(), sl_y)
    s_dev = softmax(sp_dev.log_scores() / scaler.temperature_).max(axis=1)
    s_sl = softmax(sp_sl.log_scores() / scaler.temperature_).max(axis=1)
    t_dev = tf_dev.probs.max(axis=1)
    t_sl = tf_sl.probs.max(axis=1)
    pc, fc, tc = sp_dev.label_index == dev_y, de_dev.label_index == dev_y, tf_dev.label_index == dev_y
    pc_sl, fc_sl, tc_sl = sp_sl.label_index == sl_y, de_sl.label_index == sl_y, tf_sl.label_index == sl_y
    target_dev = args.relative * acc["dense"]
    print(f"temperature of the sparse model, fitted on the train slice: T = {scaler.temperature_:.3f}")

    # 3. Two-stage: oracle, train slice, cross-fit (several selection rules).
    def two_stage(mask_keep: np.ndarray) -> dict[str, Any]:
        correct = np.where(mask_keep, pc, fc)
        return {"coverage": float(mask_keep.mean()), "system_accuracy": float(correct.mean()),
                "relative": float(correct.mean() / acc["dense"]), "holds": bool(correct.mean() >= target_dev - 1e-12),
                "accepted_accuracy": float(pc[mask_keep].mean()) if mask_keep.any() else float("nan")}

    oracle_t = relative_choice(s_dev, pc, fc, args.relative)
    oracle = two_stage(s_dev >= oracle_t) | {"threshold": oracle_t}
    slice_t = relative_choice(s_sl, pc_sl, fc_sl, args.relative)
    from_slice = two_stage(s_dev >= slice_t) | {"threshold": slice_t}
    slice_t_fs = relative_choice(s_sl, pc_sl, fc_sl, args.relative, "fixed-sequence", 0.0025)
    from_slice_fs = two_stage(s_dev >= slice_t_fs) | {"threshold": slice_t_fs}

    def cf_two(rule: str, margin: float, delta: float | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def fit_apply(sel: np.ndarray, app: np.ndarray) -> np.ndarray:
            # Temperature and threshold both come from the other folds only.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ts = TemperatureScaler().fit(sp_dev.log_scores()[sel], dev_y[sel])
            sc = softmax(sp_dev.log_scores() / ts.temperature_).max(axis=1)
            return sc[app] >= relative_choice(sc[sel], pc[sel], fc[sel], args.relative, rule, margin, delta)
        return fit_apply

    def cf_three(rule: str, margin: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def fit_apply(sel: np.ndarray, app: np.ndarray) -> np.ndarray:
            if rule == "cheapest":
                a, b = choose_two_thresholds(t_dev[sel], tc[sel], s_dev[sel], pc[sel], fc[sel],
                                             args.relative + margin, tau["ds"])
            else:
                a, b = sequential_two_thresholds(t_dev[sel], tc[sel], s_dev[sel], pc[sel], fc[sel],
                                                 args.relative, margin)
            return np.stack([t_dev[app] >= a, s_dev[app] >= b], axis=1)
        return fit_apply

    def three_stage(keep0: np.ndarray, keep1: np.ndarray) -> dict[str, Any]:
        keep1 = keep1 & ~keep0
        correct = np.where(keep0, tc, np.where(keep1, pc, fc))
        return {"tfidf_share": float(keep0.mean()), "sparse_share": float(keep1.mean()),
                "coverage": float((keep0 | keep1).mean()), "system_accuracy": float(correct.mean()),
                "relative": float(correct.mean() / acc["dense"]), "holds": bool(correct.mean() >= target_dev - 1e-12)}

    def run_crossfit(fit_apply: Callable[[np.ndarray, np.ndarray], np.ndarray], stages: int) -> tuple[dict, Any]:
        runs, first = [], None
        for seed in range(args.crossfit_seeds):
            keep = crossfit(n, args.folds, seed, fit_apply)
            runs.append(two_stage(keep) if stages == 2 else three_stage(keep[:, 0], keep[:, 1]))
            first = keep if first is None else first
        return summarize(runs), first

    two_rules = {"loosest": ("loosest", 0.0), "fixed-sequence": ("fixed-sequence", 0.0),
                 "fixed-sequence +0.25pt": ("fixed-sequence", 0.0025),
                 "fixed-sequence +0.5pt": ("fixed-sequence", 0.005)}
    cross, cross_masks = {}, {}
    for label, (rule, margin) in two_rules.items():
        cross[label], cross_masks[label] = run_crossfit(cf_two(rule, margin), 2)
    guaranteed, _ = run_crossfit(cf_two("loosest", 0.0, delta=0.05), 2)

    # 4. Timings: one pass prices the three-stage search; repeated timings below give the figures.
    timings_path = cache.root / "timings.json"
    tau = quick_tau(models, dev_texts, tfidf, min(args.repeats, 1), timings_path)

    # 5. Three-stage: TF-IDF -> sparse -> dense.
    t1o, t2o = choose_two_thresholds(t_dev, tc, s_dev, pc, fc, args.relative, tau["ds"])
    oracle3 = three_stage(t_dev >= t1o, s_dev >= t2o) | {"thresholds": [t1o, t2o]}
    t1s, t2s = choose_two_thresholds(t_sl, tc_sl, s_sl, pc_sl, fc_sl, args.relative, tau["ds"])
    slice3 = three_stage(t_dev >= t1s, s_dev >= t2s) | {"thresholds": [t1s, t2s]}
    three_rules = {"cheapest pair": ("cheapest", 0.0), "sequential": ("sequential", 0.0),
                   "sequential +0.25pt": ("sequential", 0.0025), "sequential +0.5pt": ("sequential", 0.005)}
    cross3, cross3_masks = {}, {}
    for label, (rule, margin) in three_rules.items():
        cross3[label], cross3_masks[label] = run_crossfit(cf_three(rule, margin), 3)

    # 6. Wall-clock of the routed systems vs the dense model on everything (cross-fit: seed 0).
    systems = {
        "2-stage oracle": (None, s_dev >= oracle_t),
        "2-stage train slice": (None, s_dev >= slice_t),
        "2-stage cross-fit loosest": (None, cross_masks["loosest"]),
        "2-stage cross-fit fixed-seq +0.25pt": (None, cross_masks["fixed-sequence +0.25pt"]),
        "3-stage oracle": (t_dev >= t1o, s_dev >= t2o),
        "3-stage cross-fit cheapest": (cross3_masks["cheapest pair"][:, 0], cross3_masks["cheapest pair"][:, 1]),
        "3-stage cross-fit seq +0.25pt": (cross3_masks["sequential +0.25pt"][:, 0],
                                          cross3_masks["sequential +0.25pt"][:, 1]),
    }
    for name, (k0, k1) in systems.items():
        print(f"  {name}: cheap stages answer {np.mean(k1 if k0 is None else (k0 | k1)):.1%}")
    timing = time_systems(models, dev_texts, tfidf, systems, args.repeats, timings_path)
    if timing:
        med = {k: float(np.median(timing[k])) / n for k in ("tfidf_all", "sparse_all", "dense_ds_all", "dense_hf_all")}
        tau = {"ds": [med["tfidf_all"], med["sparse_all"], med["dense_ds_all"]],
               "hf": [med["tfidf_all"], med["sparse_all"], med["dense_hf_all"]]}

    # 7. The study's table.
    cost_models = {
        "study per-sample ($0.001 / $0.005)": CostModel.per_sample(list(STUDY_PER_SAMPLE)),
        "study hourly (CPU $0.50/h @100/s, GPU $1.50/h @10/s)": CostModel.hourly(list(STUDY_HOURLY)),
        "measured here, DeepSparse dense ($0.50/h both)": CostModel(
            [StageCost.hourly(CPU_PRICE, 1 / tau["ds"][1]), StageCost.hourly(CPU_PRICE, 1 / tau["ds"][2])]),
        "measured here, HF-pipeline dense ($0.50/h both)": CostModel(
            [StageCost.hourly(CPU_PRICE, 1 / tau["hf"][1]), StageCost.hourly(CPU_PRICE, 1 / tau["hf"][2])]),
    }
    results = {name: evaluate(labels=dev_names, primary=sp_dev, fallback=de_dev, calibrator=scaler, cost_model=cm,
                              stage_names=("sparse", "dense"))
               for name, cm in cost_models.items()}
    raw = evaluate(labels=dev_names, primary=sp_dev, fallback=de_dev, stage_names=("sparse", "dense"))
    table = study_table(results, raw, {"train slice": slice_t, "oracle": oracle_t})
    print_report(acc, scaler, raw, results, table, oracle, from_slice, from_slice_fs, cross, guaranteed, oracle3,
                 slice3, cross3, timing, tau, args)

    out = {
        "n_dev": n, "train_slice": len(sl), "seed": args.seed, "relative_target": args.relative,
        "accuracy": acc, "temperature": scaler.temperature_, "study": STUDY,
        "two_stage": {"oracle": oracle, "train_slice": from_slice,
                      "train_slice_fixed_sequence_0.25pt": from_slice_fs, "crossfit": cross,
                      "crossfit_guaranteed_delta_0.05": guaranteed},
        "three_stage": {"oracle": oracle3, "train_slice": slice3, "crossfit": cross3},
        "seconds_per_input": tau, "timing": timing, "table": table,
        "uncalibrated_coverage_at_0.8": raw.at(0.8).coverage,
    }
    results_path = Path(args.results).expanduser() if args.results else cache.root / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(out, indent=2, default=_json) + "\n")
    print(f"\nall figures: {results_path}")
    if args.figures:
        write_figures(Path(args.figures), results, s_dev, pc, fc, acc, args.relative,
                      {"oracle": oracle, "train slice": from_slice, "cross-fit, loosest": cross["loosest"],
                       "cross-fit, fixed-seq +0.25pt": cross["fixed-sequence +0.25pt"]},
                      {"3-stage oracle": oracle3, "3-stage cross-fit, cheapest": cross3["cheapest pair"],
                       "3-stage cross-fit, seq +0.25pt": cross3["sequential +0.25pt"]})
    return 0


def _json(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, float) and not np.isfinite(x):
        return None
    raise TypeError(type(x).__name__)


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, (float, int)) and not isinstance(v, bool)]
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    out["range"] = {k: [float(min(r[k] for r in runs)), float(max(r[k] for r in runs))] for k in keys}
    out["holds_share"] = float(np.mean([r["holds"] for r in runs]))
    out["n_runs"] = len(runs)
    return out


def quick_tau(models: Models, texts: list[str], tfidf: Any, repeats: int, path: Path) -> dict[str, list[float]]:
    """Seconds per input of (TF-IDF, sparse, dense) with the dense model on DeepSparse and on the
    HF pipeline: the median of ``repeats`` full passes over dev, interleaved."""
    if repeats == 0:
        if path.exists():
            return json.loads(path.read_text())["tau"]
        print("  no cached timings: assuming the sparse model is 1.7x faster than the dense one")
        return {"ds": [1e-5, 0.01, 0.017], "hf": [1e-5, 0.01, 0.017]}
    sparse, dense_ds, dense_hf = models.get("sparse_ds"), models.get("dense_ds"), models.get("dense_hf")
    for m in (sparse, dense_ds, dense_hf):  # warm-up: first calls allocate
        m.predict(texts[:32])
    runs: dict[str, list[float]] = {"tfidf": [], "sparse": [], "dense_ds": [], "dense_hf": []}
    print(f"\ntiming a full pass over dev per model, to price the three-stage search ({repeats} pass)...")
    for _ in range(repeats):
        runs["tfidf"].append(wall(lambda: tfidf.predict(texts)))
        runs["sparse"].append(wall(lambda: sparse.predict(texts)))
        runs["dense_ds"].append(wall(lambda: dense_ds.predict(texts)))
        runs["dense_hf"].append(wall(lambda: dense_hf.predict(texts)))
    med = {k: float(np.median(v)) / len(texts) for k, v in runs.items()}
    tau = {"ds": [med["tfidf"], med["sparse"], med["dense_ds"]], "hf": [med["tfidf"], med["sparse"], med["dense_hf"]]}
    path.write_text(json.dumps({"tau": tau, "full_pass_seconds": runs}, indent=2))
    return tau


def time_systems(models: Models, texts: list[str], tfidf: Any, systems: dict[str, tuple[Any, np.ndarray]],
                 repeats: int, path: Path) -> dict[str, Any]:
    """Wall clock of each routed system against the dense model on everything, per repeat.

    A routed run is what a deployment does: the first stage on every input, then the next stage
    on what it deferred (DeepSparse pads the last partial batch, so small deferred sets pay for
    whole batches)."""
    cached = json.loads(path.read_text()) if path.exists() else {}
    if repeats == 0:
        return cached.get("systems", {})
    sparse, dense_ds, dense_hf = models.get("sparse_ds"), models.get("dense_ds"), models.get("dense_hf")
    out: dict[str, Any] = {"dense_ds_all": [], "dense_hf_all": [], "sparse_all": [], "tfidf_all": []}
    per: dict[str, dict[str, list[float]]] = {name: {"ds": [], "hf": []} for name in systems}
    print(f"timing the routed systems ({repeats} repeats)...")
    for _ in range(repeats):
        out["dense_ds_all"].append(wall(lambda: dense_ds.predict(texts)))
        out["dense_hf_all"].append(wall(lambda: dense_hf.predict(texts)))
        out["sparse_all"].append(wall(lambda: sparse.predict(texts)))
        out["tfidf_all"].append(wall(lambda: tfidf.predict(texts)))
        for name, (keep0, keep1) in systems.items():
            if keep0 is None:
                first = out["sparse_all"][-1]
                deferred = subset(texts, ~keep1)
            else:
                to_sparse = subset(texts, ~keep0)
                first = out["tfidf_all"][-1] + wall(sparse.predict, to_sparse)
                deferred = subset(texts, ~keep0 & ~keep1)
            for kind, dense, base in (("ds", dense_ds, "dense_ds_all"), ("hf", dense_hf, "dense_hf_all")):
                t = first + (wall(dense.predict, deferred) if deferred else 0.0)
                per[name][kind].append(t / out[base][-1])
    out["ratios"] = {name: {kind: {"median": float(np.median(v)), "min": float(min(v)), "max": float(max(v)),
                                   "runs": v} for kind, v in d.items()} for name, d in per.items()}
    out["speedup_sparse_vs_dense_ds"] = [d / s for d, s in zip(out["dense_ds_all"], out["sparse_all"])]
    out["speedup_sparse_vs_dense_hf"] = [d / s for d, s in zip(out["dense_hf_all"], out["sparse_all"])]
    data = json.loads(path.read_text()) if path.exists() else {}
    data["systems"] = out
    path.write_text(json.dumps(data, indent=2))
    return out


def study_table(results: dict[str, Any], raw: Any, chosen: dict[str, float]) -> list[dict[str, Any]]:
    names = list(results)
    first = results[names[0]]
    rows = []
    for label, t in [("sparse on everything", 0.0), *((f"{x:g}", x) for x in TABLE_THRESHOLDS),
                     *((f"{v:.3f} ({k})", v) for k, v in chosen.items()), ("inf: all deferred (pays both)", np.inf)]:
        p = first.at(t)
        row = {"threshold": label, "coverage": p.coverage, "accepted_accuracy": p.accepted_accuracy,
               "system_accuracy": p.system_accuracy,
               "coverage_uncalibrated": raw.at(t).coverage if np.isfinite(t) and "(" not in label else None}
        for name in names:
            q = results[name].at(t)
            row[name] = {"cost_per_1k": 1000 * q.cost / first.n, "savings": q.savings}
        rows.append(row)
    return rows


def fmt_range(d: dict[str, Any], key: str, pct: bool = True) -> str:
    lo, hi = d["range"][key]
    f = (lambda v: f"{v:.1%}") if pct else (lambda v: f"{v:.3f}")
    return f"{f(d[key])} (range {f(lo)}-{f(hi)})"


def print_report(acc, scaler, raw, results, table, oracle, from_slice, from_slice_fs, cross, guaranteed, oracle3,
                 slice3, cross3, timing, tau, args) -> None:
    rel = args.relative
    print(f"\n== The study's table (sparse calibrated with T = {scaler.temperature_:.3f} from the train slice) ==")
    names = list(results)
    short = ["per-sample", "study hourly", "measured DS", "measured HF"]
    print(f"{'threshold':>22} {'sparse keeps':>12} {'acc kept':>9} {'system acc':>10}  "
          + "  ".join(f"{s + ' saves':>16}" for s in short))
    for r in table:
        print(f"{r['threshold']:>22} {r['coverage']:>12.1%} {r['accepted_accuracy']:>9.4f} {r['system_accuracy']:>10.4f}  "
              + "  ".join(f"{r[n]['savings']:>16.1%}" for n in names))
    print(f"  (uncalibrated sparse model at threshold 0.8 keeps {raw.at(0.8).coverage:.1%}; the study: about 97%)")
    print("  cost per 1,000 inputs at 0.8: " + ", ".join(
        f"{s} ${r['cost_per_1k']:.4g}" for s, r in zip(short, (table[4][n] for n in names))))

    print(f"\n== Headline: share answered without the dense model, system accuracy >= {rel:.1%} of dense "
          f"({rel * acc['dense']:.4f} on dev) ==")
    print(f"{'system, how the threshold was chosen':<44} {'coverage':>22} {'% of oracle':>11} "
          f"{'system acc / dense':>24} {'holds':>6}")

    def line(label: str, d: dict[str, Any], oracle_cov: float) -> None:
        if "range" in d:
            cov = f"{d['coverage']:.1%} ({d['range']['coverage'][0]:.1%}-{d['range']['coverage'][1]:.1%})"
            relv = f"{d['relative']:.2%} ({d['range']['relative'][0]:.2%}-{d['range']['relative'][1]:.2%})"
            holds = f"{d['holds_share']:.0%}"
        else:
            cov, relv, holds = f"{d['coverage']:.1%}", f"{d['relative']:.2%}", "yes" if d["holds"] else "no"
        extra = f" (TF-IDF {d['tfidf_share']:.1%})" if "tfidf_share" in d else ""
        print(f"{label:<44} {cov:>22} {d['coverage'] / oracle_cov:>11.1%} {relv:>24} {holds:>6}{extra}")

    line("2-stage oracle (chosen on dev itself)", oracle, oracle["coverage"])
    line("2-stage train slice, loosest", from_slice, oracle["coverage"])
    line("2-stage train slice, fixed-seq +0.25pt", from_slice_fs, oracle["coverage"])
    for label, d in cross.items():
        line(f"2-stage cross-fit, {label}", d, oracle["coverage"])
    line("2-stage cross-fit, 95% guarantee (delta .05)", guaranteed, oracle["coverage"])
    line("3-stage oracle", oracle3, oracle3["coverage"])
    line("3-stage train slice, cheapest pair", slice3, oracle3["coverage"])
    for label, d in cross3.items():
        line(f"3-stage cross-fit, {label}", d, oracle3["coverage"])
    print(f"  cross-fit: {args.folds} folds x {args.crossfit_seeds} fold assignments (mean, range); "
          "holds = share of assignments at or above the bar")

    print("\n== Measured wall clock on this machine (one core per model; ratio to dense on everything) ==")
    print(f"  seconds per input: TF-IDF {tau['ds'][0] * 1e3:.3f} ms, sparse (DeepSparse) {tau['ds'][1] * 1e3:.2f} ms, "
          f"dense DeepSparse {tau['ds'][2] * 1e3:.2f} ms, dense HF pipeline {tau['hf'][2] * 1e3:.2f} ms")
    if timing:
        sd, sh = timing["speedup_sparse_vs_dense_ds"], timing["speedup_sparse_vs_dense_hf"]
        print(f"  sparse vs dense speed-up: DeepSparse {np.median(sd):.2f}x ({min(sd):.2f}-{max(sd):.2f}), "
              f"HF pipeline {np.median(sh):.2f}x ({min(sh):.2f}-{max(sh):.2f})")
        for name, r in timing["ratios"].items():
            print(f"  {name:<36} dense on DeepSparse {r['ds']['median']:.3f} ({r['ds']['min']:.3f}-{r['ds']['max']:.3f})"
                  f"   dense HF pipeline {r['hf']['median']:.3f} ({r['hf']['min']:.3f}-{r['hf']['max']:.3f})")


def write_figures(out: Path, results: dict[str, Any], s_dev: np.ndarray, pc: np.ndarray, fc: np.ndarray,
                  acc: dict[str, float], relative: float, points: dict[str, dict[str, float]],
                  points3: dict[str, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    dpi = 80
    res = results[list(results)[2]]  # measured prices, DeepSparse dense
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")  # as Evaluation.plot("summary")
    AccuracyThresholdDisplay.from_evaluation(res, ax=axes[0])
    CostThresholdDisplay.from_evaluation(res, ax=axes[1])
    CostAccuracyDisplay.from_evaluation(res, ax=axes[2])
    fig.savefig(out / "sst2_summary.png", dpi=dpi)
    plt.close(fig)

    rel = ReliabilityDisplay.from_evaluation(res)
    rel.figure_.savefig(out / "sst2_reliability.png", dpi=dpi)
    plt.close(rel.figure_)

    fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
    t = res.table
    ax.plot(t["coverage"], t["system_accuracy"] / acc["dense"], color="C0", linewidth=1.2,
            label="2-stage, every threshold (dev)")
    ax.axhline(relative, color="0.4", linestyle="--", linewidth=0.8, label=f"{relative:.1%} of dense accuracy")
    styles = iter([("s", "k"), ("v", "C3"), ("o", "C2"), ("o", "C4"), ("^", "k"), ("D", "C2"), ("D", "C4")])
    for group, filled in ((points, True), (points3, False)):
        for name, p in group.items():
            m, c = next(styles)
            ax.plot(p["coverage"], p["relative"], m, color=c, markersize=6.5,
                    markerfacecolor=c if filled else "none", label=name if not filled else f"2-stage, {name}")
    ax.set_xlabel("share of dev answered without the dense model")
    ax.set_ylabel("system accuracy / dense accuracy")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.955, 1.01)
    ax.set_title("SST-2 dev: thresholds chosen off-dev vs the oracle")
    ax.legend(fontsize="x-small", loc="lower left")
    fig.savefig(out / "sst2_coverage.png", dpi=dpi)
    plt.close(fig)
    for name in ("sst2_summary.png", "sst2_reliability.png", "sst2_coverage.png"):
        print(f"  wrote {out / name} ({(out / name).stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    raise SystemExit(main())
