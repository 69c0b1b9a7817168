"""SmolLM2-135M-Instruct as a zero-shot SST-2 classifier, and MiniLM -> SmolLM2 routed (docs/llm.md).

Start the server first (tools/llama_server.sh builds it once):

    .cache/llama-venv/bin/python -m llama_cpp.server --model ~/.cache/confroute/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --model_alias smollm2 --host 127.0.0.1 --port 8765 --n_ctx 1024 --logits_all true
    python examples/llm_sst2.py --url http://127.0.0.1:8765/v1 --n 200

Prints the zero-shot accuracy, the routed system's accuracy and deferral at a few thresholds,
the measured token usage per input, and the API arithmetic at the prices given on the command line.
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

from confroute.core import decision  # noqa: E402
from confroute.core.cost import TokenPrice  # noqa: E402
from confroute.predictors._cache import ResponseCache  # noqa: E402
from confroute.predictors.onnxruntime import ONNXRuntimePredictor  # noqa: E402
from confroute.predictors.openai import OpenAIPredictor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--input-price", type=float, default=0.15, help="per million prompt tokens (yours)")
    ap.add_argument("--output-price", type=float, default=0.60, help="per million completion tokens (yours)")
    ap.add_argument("--cache", default=str(ROOT / "eval" / "llm-cache.sqlite"))
    args = ap.parse_args()
    texts, labels = sst2_dev(args.n)
    y = np.asarray(labels)
    llm = OpenAIPredictor(args.url, MODEL, max_concurrency=1, endpoint="completions",
                          cache=ResponseCache(args.cache), **SST2_PROMPT)
    big = llm.predict(texts)
    small = ONNXRuntimePredictor(shared_dir() / "models" / "minilm-sst2-pruned80", num_threads=1).predict(texts)
    out: dict = {"n": args.n, "smollm2_accuracy": float((big.label_index == y).mean()),
                 "minilm_accuracy": float((small.label_index == y).mean()),
                 "smollm2_class_mass_mean": float(np.mean([llm.calls[t].class_mass for t in texts]))}
    usage = llm.usage(texts)
    price = TokenPrice(args.input_price, args.output_price)
    out["prompt_tokens_mean"] = float(np.mean(usage["prompt_tokens"]))
    out["llm_price_per_input"] = price.mean_per_input(usage)
    conf = small.probs.max(axis=1)
    rows = []
    for t in (0.8, 0.9, 0.95, 0.99):
        keep = decision.accepts(conf, small.label_index, t)
        pred = np.where(keep, small.label_index, big.label_index)
        rows.append({"threshold": t, "deferred": float((~keep).mean()), "accuracy": float((pred == y).mean())})
    out["routed_minilm_to_smollm2"] = rows
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
