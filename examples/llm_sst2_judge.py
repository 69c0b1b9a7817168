"""A learned correctness judge (CorrectnessJudge) as the router's score in front of SmolLM2 (docs/llm.md).

Uses the answers examples/llm_sst2.py cached (no server needed once they are cached): fits the judge
on the even-numbered SST-2 dev sentences (does MiniLM get it right?), then compares, on the odd ones,
deferring by MiniLM's max probability against deferring by the judge's score, at equal deferral.

    python examples/llm_sst2_judge.py --cache eval/llm-cache.sqlite
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _llama import MODEL, SST2_PROMPT, shared_dir, sst2_dev  # noqa: E402

from confroute.calibration.judge import CorrectnessJudge  # noqa: E402
from confroute.core.types import Predictions  # noqa: E402
from confroute.predictors._cache import ResponseCache  # noqa: E402
from confroute.predictors.onnxruntime import ONNXRuntimePredictor  # noqa: E402
from confroute.predictors.openai import OpenAIPredictor  # noqa: E402


def routed_accuracy(score: np.ndarray, small: np.ndarray, big: np.ndarray, y: np.ndarray, share: float) -> float:
    """Accuracy when the ``share`` of inputs with the lowest score go to the LLM."""
    defer = np.zeros(len(score), dtype=bool)
    defer[np.argsort(score, kind="stable")[: int(round(share * len(score)))]] = True
    return float((np.where(defer, big, small) == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8765/v1", help="only asked for uncached answers")
    ap.add_argument("--n", type=int, default=872)
    ap.add_argument("--cache", default=str(ROOT / "eval" / "llm-cache.sqlite"))
    args = ap.parse_args()
    texts, labels = sst2_dev(args.n)
    y = np.asarray(labels)
    llm = OpenAIPredictor(args.url, MODEL, max_concurrency=1, endpoint="completions",
                          cache=ResponseCache(args.cache), **SST2_PROMPT)
    big = llm.predict(texts).label_index
    small = ONNXRuntimePredictor(shared_dir() / "models" / "minilm-sst2-pruned80", num_threads=1).predict(texts)
    fit, test = np.arange(len(texts)) % 2 == 0, np.arange(len(texts)) % 2 == 1
    t_fit = [t for t, f in zip(texts, fit) if f]
    t_test = [t for t, f in zip(texts, test) if f]
    def rows_of(mask: np.ndarray) -> Predictions:
        return Predictions(small.probs[mask], None if small.logits is None else small.logits[mask], small.classes)

    judge = CorrectnessJudge().fit(rows_of(fit), t_fit, small.label_index[fit] == y[fit])
    s_judge = judge.score_predictions(rows_of(test), t_test)
    s_prob = small.probs[test].max(axis=1)
    rows = []
    for share in (0.1, 0.16, 0.25):
        rows.append({"deferred": share,
                     "max_prob": routed_accuracy(s_prob, small.label_index[test], big[test], y[test], share),
                     "judge": routed_accuracy(s_judge, small.label_index[test], big[test], y[test], share)})
    print(json.dumps({"n_fit": int(fit.sum()), "n_test": int(test.sum()), "cache": llm.cache.stats(),
                      "minilm": float((small.label_index[test] == y[test]).mean()),
                      "smollm2": float((big[test] == y[test]).mean()), "routed": rows}, indent=2))


if __name__ == "__main__":
    main()
