"""The LLM study of docs/llm.md in one run: SmolLM2-135M on SST-2 dev, alone and routed.

* SmolLM2 zero-shot (a plain instruction, chat endpoint) and two-shot (plain completion) accuracy;
* MiniLM int8 -> SmolLM2 and SmolLM2 -> MPNet int8, evaluated by ``evaluate()`` with the LLM stage
  priced by the tokens each input used (``CostModel([..., TokenPrice(in, out)])``);
* the threshold certified at 99.5% of the LLM's accuracy (``choose_thresholds(...,
  target_relative_accuracy=0.995)``) and what it saves per million inputs at the given prices;
* a ``CorrectnessJudge`` as the router's score in front of SmolLM2 (fit on the even sentences,
  routed and measured on the odd ones), against MiniLM's max probability.

Start the server first (tools/llama_server.sh builds it once), then:

    .cache/llama-venv/bin/python -m llama_cpp.server --model ~/.cache/confroute/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --model_alias smollm2 --host 127.0.0.1 --port 8765 --n_ctx 1024 --logits_all true --n_threads 1
    python examples/llm_sst2_study.py --url http://127.0.0.1:8765/v1 --minilm models/minilm-sst2-int8

Local models run on onnxruntime with 1 thread; their price per input is their measured seconds per
input at ``--core-hour`` dollars per core-hour. Answers are cached (SQLite): a rerun asks nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _llama import MODEL, SST2_PROMPT, shared_dir, sst2_dev  # noqa: E402

from confroute import CostModel, ThresholdRouter, choose_thresholds, evaluate  # noqa: E402
from confroute.calibration.judge import CorrectnessJudge  # noqa: E402
from confroute.core.cost import TokenPrice  # noqa: E402
from confroute.predictors._cache import ResponseCache  # noqa: E402
from confroute.predictors.onnxruntime import ONNXRuntimePredictor  # noqa: E402
from confroute.predictors.openai import OpenAIPredictor  # noqa: E402

#: The plain zero-shot instruction (chat endpoint).
ZERO_SHOT = dict(
    classes=["NEGATIVE", "POSITIVE"], codes=["negative", "positive"], case_sensitive=False,
    template="Is the sentiment of this movie review negative or positive?\nReview: {input}\n"
             "Answer with one word: negative or positive.",
)


def timed_local(path: str, texts: list[str]) -> tuple[ONNXRuntimePredictor, float]:
    """The model (1 thread) and its measured seconds per input on ``texts``."""
    model = ONNXRuntimePredictor(path, num_threads=1, batch_size=32)
    model.predict(texts[:32])  # warm-up
    t0 = time.perf_counter()
    model.predict(texts)
    return model, (time.perf_counter() - t0) / len(texts)


def point(ev, t: float) -> dict:
    p = ev.at(t)
    return {"threshold": t, "deferred": round(1 - p.coverage, 4), "accuracy": round(p.system_accuracy, 4),
            "cost_per_input": p.cost / ev.n, "savings": round(p.savings, 4)}


def certified(ev, label: str) -> dict:
    out = {}
    for delta in (0.05, None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = choose_thresholds(ev, target_relative_accuracy=0.995, delta=delta)
        base = ev.cost_model.baseline(1)
        out["certified" if delta else "empirical"] = {
            "threshold": c.threshold, "feasible": c.feasible, "deferred": round(1 - c.coverage, 4),
            "system_accuracy": round(c.system_accuracy, 4), "llm_accuracy": round(ev.stage_accuracy[label], 4),
            "cost_per_input": c.cost_per_input, "llm_alone_per_input": base,
            "saved_per_million_inputs": (base - c.cost_per_input) * 1e6, "savings": round(c.savings, 4)}
    return out


# long: one linear study script, each block one table of docs/llm.md
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--n", type=int, default=872)
    ap.add_argument("--minilm", default=str(shared_dir() / "models" / "minilm-sst2-pruned80"))
    ap.add_argument("--mpnet", default=str(shared_dir() / "models" / "mpnet-sst2-int8"))
    ap.add_argument("--input-price", type=float, default=0.15, help="$ per million prompt tokens (yours)")
    ap.add_argument("--output-price", type=float, default=0.60, help="$ per million completion tokens (yours)")
    ap.add_argument("--core-hour", type=float, default=0.05, help="$ per CPU core-hour for the local models")
    ap.add_argument("--cache", default=str(ROOT / "eval" / "llm-cache.sqlite"))
    ap.add_argument("--no-zero-shot", action="store_true")
    args = ap.parse_args()
    texts, labels = sst2_dev(args.n)
    y = np.asarray(labels)
    names = np.array(["NEGATIVE", "POSITIVE"])[y]
    cache = ResponseCache(args.cache)
    llm = OpenAIPredictor(args.url, MODEL, max_concurrency=1, endpoint="completions", cache=cache, **SST2_PROMPT)
    out: dict = {"n": len(texts), "prices": {"input_per_million": args.input_price,
                                             "output_per_million": args.output_price, "core_hour": args.core_hour}}
    t0 = time.perf_counter()
    two_shot = llm.predict(texts)
    out["smollm2_seconds_per_input_uncached"] = (time.perf_counter() - t0) / max(cache.misses, 1)
    out["smollm2_two_shot_accuracy"] = float((two_shot.label_index == y).mean())
    usage = llm.usage(texts)
    out["prompt_tokens_mean"] = float(np.mean(usage["prompt_tokens"]))
    out["completion_tokens_mean"] = float(np.mean(usage["completion_tokens"]))
    if not args.no_zero_shot:
        zero = OpenAIPredictor(args.url, MODEL, max_concurrency=1, endpoint="chat", cache=cache, **ZERO_SHOT)
        zp = zero.predict(texts)
        out["smollm2_zero_shot_accuracy"] = float((zp.label_index == y).mean())
        out["smollm2_zero_shot_predicted_positive"] = float((zp.label_index == 1).mean())
        out["smollm2_zero_shot_class_mass_mean"] = float(np.mean([zero.calls[t].class_mass for t in texts]))
    minilm, s_minilm = timed_local(args.minilm, texts)
    mpnet, s_mpnet = timed_local(args.mpnet, texts)
    price = TokenPrice(args.input_price, args.output_price)
    p_minilm, p_mpnet = s_minilm * args.core_hour / 3600, s_mpnet * args.core_hour / 3600
    out["minilm"] = {"path": args.minilm, "seconds_per_input": s_minilm, "price_per_input": p_minilm,
                     "accuracy": float((minilm.predict(texts).label_index == y).mean())}
    out["mpnet"] = {"path": args.mpnet, "seconds_per_input": s_mpnet, "price_per_input": p_mpnet,
                    "accuracy": float((mpnet.predict(texts).label_index == y).mean())}
    out["llm_price_per_input_mean"] = price.mean_per_input(usage)

    small_first = ThresholdRouter(minilm, llm, cost_model=CostModel([p_minilm, price]), names=["minilm", "smollm2"])
    ev = evaluate(small_first, texts, names)
    out["minilm_to_smollm2"] = {"points": [point(ev, t) for t in (0.8, 0.9, 0.95, 0.99)],
                                "relative_0.995": certified(ev, "smollm2")}
    llm_first = ThresholdRouter(llm, mpnet, cost_model=CostModel([price, p_mpnet]), names=["smollm2", "mpnet"])
    ev2 = evaluate(llm_first, texts, names)
    out["smollm2_to_mpnet"] = {"points": [point(ev2, t) for t in (0.6, 0.7, 0.8, 0.9)],
                               "relative_0.995": certified(ev2, "mpnet")}

    # A learned judge as the router's score in front of the LLM: fit on the even, route the odd.
    even, odd = [t for i, t in enumerate(texts) if i % 2 == 0], [t for i, t in enumerate(texts) if i % 2 == 1]
    even_names, odd_names = names[::2], names[1::2]
    p_even = minilm.predict(even)
    llm_right = two_shot.label_index[::2] == y[::2]
    judges = {target: CorrectnessJudge(target=target).fit(p_even, even, labels=even_names, fallback_correct=llm_right)
              for target in ("primary_correct", "fallback_helps")}
    rows = []
    by_prob = evaluate(ThresholdRouter(minilm, llm, cost_model=CostModel([p_minilm, price])), odd, odd_names)
    by_judge = {k: evaluate(ThresholdRouter(minilm, llm, score=j, cost_model=CostModel([p_minilm, price])), odd,
                            odd_names) for k, j in judges.items()}
    for share in (0.10, 0.16, 0.25):
        row = {"deferred": share}
        for name, e in [("max_prob", by_prob), *by_judge.items()]:
            r = int(np.argmin(np.abs((1 - e.table["coverage"]) - share)))  # the row nearest that deferral
            row[name] = {"accuracy": round(float(e.table["system_accuracy"][r]), 4),
                         "deferred": round(float(1 - e.table["coverage"][r]), 4)}
        rows.append(row)
    out["judge_in_front_of_smollm2"] = {"n_fit": len(even), "n_test": len(odd), "rows": rows,
                                        "minilm_odd": float(by_prob.stage_accuracy["primary"]),
                                        "smollm2_odd": float(by_prob.stage_accuracy["fallback"])}
    out["cache"] = cache.stats()
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
