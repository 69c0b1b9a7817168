"""Temperature scaling: confroute's TemperatureScaler against scikit-learn's
CalibratedClassifierCV(method="temperature") (scikit-learn >= 1.8), on the same data.

For each dataset a model is fitted on a training split; both calibrators are fitted on the same
calibration split and compared on a separate test split:

* ``TemperatureScaler`` on the model's log-probabilities (``Predictions.log_scores()``, what a
  router sees from ``SklearnPredictor``), and on ``decision_function`` where the model has one;
* ``CalibratedClassifierCV(FrozenEstimator(model), method="temperature")``, which uses
  ``decision_function`` when the model has one (binary: logits ``(-d, d)``), else
  ``log(predict_proba)``.

Reported: the fitted temperature (scikit-learn's ``1 / beta_``), the test negative
log-likelihood before and after, the largest difference between the two calibrated probability
matrices, and the fit time. One thread (OMP/BLAS pinned), data from ``../shared`` where present
(TREC, AG News, SST-2) plus scikit-learn's bundled digits.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_temperature.py

Prints a Markdown table (pasted into docs/calibration.md) and writes
benchmarks/results/temperature.json.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from confroute import Predictions, TemperatureScaler

SHARED = Path(os.environ.get("CONFROUTE_SHARED") or Path(__file__).resolve().parents[1] / ".." / "shared")


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-300, None))))


def _splits(n: int, seed: int, parts: tuple[float, float]) -> tuple[np.ndarray, ...]:
    idx = np.random.default_rng(seed).permutation(n)
    a, b = int(parts[0] * n), int((parts[0] + parts[1]) * n)
    return idx[:a], idx[a:b], idx[b:]


def _pool(X: np.ndarray) -> np.ndarray:
    return X.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)


def datasets() -> list[tuple[str, str, Any, Any, Any, Any, Any, Any, Any]]:
    """(name, model description, model, X_train, y_train, X_cal, y_cal, X_test, y_test)."""
    from sklearn.datasets import load_digits
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.naive_bayes import GaussianNB

    out = []
    X, y = load_digits(return_X_y=True)
    tr, ca, te = _splits(len(y), 0, (0.5, 0.25))
    out.append(("digits (10 classes)", "logistic regression, 4x4 pooled pixels",
                LogisticRegression(C=0.1, max_iter=2000),
                _pool(X[tr]), y[tr], _pool(X[ca]), y[ca], _pool(X[te]), y[te]))
    out.append(("digits (10 classes)", "Gaussian naive Bayes (no decision_function)",
                GaussianNB(), X[tr], y[tr], X[ca], y[ca], X[te], y[te]))

    trec = SHARED / "data" / "extra"
    if (trec / "TREC.train.all").exists():
        def read(name: str) -> tuple[list[str], np.ndarray]:
            lines = (trec / name).read_text(encoding="latin-1").splitlines()
            labels, texts = zip(*(line.split(" ", 1) for line in lines if line.strip()))
            return list(texts), np.array(labels, dtype=int)

        Xtr, ytr = read("TREC.train.all")
        Xte, yte = read("TREC.test.all")
        vec = TfidfVectorizer(sublinear_tf=True).fit(Xtr)
        ca, tr = _splits(len(ytr), 1, (0.25, 0.75))[:2]
        A, B, C = vec.transform([Xtr[i] for i in tr]), vec.transform([Xtr[i] for i in ca]), vec.transform(Xte)
        out.append(("TREC (6 classes)", "TF-IDF + logistic regression",
                    LogisticRegression(C=5, max_iter=3000), A, ytr[tr], B, ytr[ca], C, yte))
        out.append(("TREC (6 classes)", "TF-IDF + SGD log-loss (one-vs-rest)",
                    SGDClassifier(loss="log_loss", alpha=1e-5, random_state=0),
                    A, ytr[tr], B, ytr[ca], C, yte))
    ag = trec / "ag_news_test.csv"
    if ag.exists():
        with open(ag, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        texts = [r["Title"] + " " + r["Description"] for r in rows]
        labels = np.array([int(r["Class Index"]) - 1 for r in rows])
        tr, ca, te = _splits(len(labels), 2, (0.5, 0.25))
        vec = TfidfVectorizer(sublinear_tf=True, min_df=2).fit([texts[i] for i in tr])
        out.append(("AG News (4 classes)", "TF-IDF + logistic regression",
                    LogisticRegression(C=5, max_iter=3000), vec.transform([texts[i] for i in tr]), labels[tr],
                    vec.transform([texts[i] for i in ca]), labels[ca], vec.transform([texts[i] for i in te]),
                    labels[te]))
    sst = SHARED / "data" / "sst2"
    if (sst / "train.tsv").exists():
        def tsv(name: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
            lines = (sst / name).read_text(encoding="utf-8").splitlines()[1:]
            pairs = [line.rsplit("\t", 1) for line in lines if line.strip()][:limit]
            return [p[0] for p in pairs], np.array([int(p[1]) for p in pairs])

        Xtr, ytr = tsv("train.tsv", 20000)
        Xdev, ydev = tsv("dev.tsv")
        vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit(Xtr)
        ca, te = _splits(len(ydev), 3, (0.5, 0.5))[:2]
        out.append(("SST-2 (2 classes)", "TF-IDF + logistic regression (20k train sentences)",
                    LogisticRegression(C=5, max_iter=3000), vec.transform(Xtr), ytr,
                    vec.transform([Xdev[i] for i in ca]), ydev[ca],
                    vec.transform([Xdev[i] for i in te]), ydev[te]))
    return out


def compare(model: Any, X_cal: Any, y_cal: np.ndarray, X_test: Any, y_test: np.ndarray) -> dict[str, Any]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    cal_p = Predictions.from_probs(model.predict_proba(X_cal))
    test_p = Predictions.from_probs(model.predict_proba(X_test))
    t0 = time.perf_counter()
    ours = TemperatureScaler().fit(cal_p, y_cal)
    t_ours = time.perf_counter() - t0
    ours_probs = ours.transform(test_p)

    row: dict[str, Any] = {
        "n_cal": int(len(y_cal)), "n_test": int(len(y_test)),
        "accuracy": float(np.mean(test_p.probs.argmax(1) == y_test)),
        "T_confroute_logprobs": ours.temperature_,
        "nll_raw": _nll(test_p.probs, y_test),
        "nll_confroute_logprobs": _nll(ours_probs, y_test),
        "fit_s_confroute": t_ours,
    }
    # The input scikit-learn uses: decision_function when the model has one, else
    # log(predict_proba + 1e-12) (its _convert_to_logits). confroute's SklearnPredictor
    # convention for a binary decision function is [0, d] (scikit-learn's: (-d, d), which halves
    # nothing but doubles the temperature).
    if hasattr(model, "decision_function"):
        d = np.asarray(model.decision_function(X_cal), dtype=np.float64)
        dt = np.asarray(model.decision_function(X_test), dtype=np.float64)
        z = np.c_[np.zeros_like(d), d] if d.ndim == 1 else d
        zt = np.c_[np.zeros_like(dt), dt] if dt.ndim == 1 else dt
    else:
        z, zt = np.log(cal_p.probs + 1e-12), np.log(test_p.probs + 1e-12)
    same = TemperatureScaler().fit(z, y_cal)
    same_probs = same.transform(zt)
    row["T_confroute_same_input"] = same.temperature_
    row["nll_confroute_same_input"] = _nll(same_probs, y_test)
    t0 = time.perf_counter()
    theirs = CalibratedClassifierCV(FrozenEstimator(model), method="temperature").fit(X_cal, y_cal)
    row["fit_s_sklearn"] = time.perf_counter() - t0
    beta = float(np.ravel(theirs.calibrated_classifiers_[0].calibrators[0].beta_)[0])
    sk_probs = theirs.predict_proba(X_test)
    row["T_sklearn"] = 1.0 / beta
    has_decision = hasattr(model, "decision_function")
    row["sklearn_input"] = "decision_function" if has_decision else "log(predict_proba)"
    row["nll_sklearn"] = _nll(sk_probs, y_test)
    row["max_abs_prob_diff"] = float(np.max(np.abs(sk_probs - ours_probs)))
    row["max_abs_prob_diff_same_input"] = float(np.max(np.abs(sk_probs - same_probs)))
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of docs/calibration.md."""
    lines = [
        "| data | model | cal / test | acc | scikit-learn's input | T: confroute on log-probs | "
        "confroute on sklearn's input | sklearn | test NLL: uncalibrated | confroute on log-probs | "
        "confroute on sklearn's input | sklearn | max abs prob. diff (same input) |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['n_cal']} / {r['n_test']} | {r['accuracy']:.3f} | "
            f"{r['sklearn_input']} | {r['T_confroute_logprobs']:.3f} | {r['T_confroute_same_input']:.3f} | "
            f"{r['T_sklearn']:.3f} | {r['nll_raw']:.4f} | {r['nll_confroute_logprobs']:.4f} | "
            f"{r['nll_confroute_same_input']:.4f} | {r['nll_sklearn']:.4f} | "
            f"{r['max_abs_prob_diff_same_input']:.1g} |"
        )
    return "\n".join(lines)


def main() -> None:
    import sklearn

    rows = []
    for name, desc, model, Xtr, ytr, Xca, yca, Xte, yte in datasets():
        model.fit(Xtr, ytr)
        row = {"dataset": name, "model": desc, **compare(model, Xca, yca, Xte, yte)}
        rows.append(row)
        print(json.dumps(row))
    print("\n" + table(rows))
    out = Path(__file__).resolve().parent / "results" / "temperature.json"
    out.write_text(json.dumps({
        "machine": platform.platform(), "python": platform.python_version(),
        "scikit_learn": sklearn.__version__,
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "rows": rows,
    }, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
