"""Benchmark: what one DeepSparse batch costs at each static sequence length, and what buckets can gain.

DeepSparse compiles one engine per static shape and picks its kernels per shape, so the time of
a batch need not follow its token count. This measures it directly with
:meth:`DeepSparsePredictor.time_buckets` (one engine per length, batch 32, ``--threads`` cores,
median of ``--repeats`` runs on a full batch of real token ids) for the pruned80 MiniLM, then
models the 872 SST-2 dev sentences on that table:

* **static 64**: every batch of 32 (input order) padded to 64 tokens,
* **buckets B**: sorted by length, each batch of 32 sent to the smallest bucket of B that holds
  its longest sentence, for the old default (16/32/64), the new default (12/40/64) and the
  buckets :meth:`DeepSparsePredictor.tune_buckets`'s rule keeps from the table,
* **ceiling**: each sorted batch sent to the fastest measured length that holds it (every length
  timed is a bucket), the most any bucket set can gain on this table.

Modelled times are sums of measured engine times (no tokenisation, no wrapper); the end-to-end
figures are in ``benchmarks/bench_backends.py``. Results: ``benchmarks/results/deepsparse_lengths.json``
and ``.md``.

Usage::

    python benchmarks/bench_deepsparse_lengths.py [--threads 1] [--repeats 5] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from confroute.integrations.io import load_texts

ROOT = Path(__file__).resolve().parents[1]
BATCH = 32
STATIC = 64
LENGTHS = (8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64)


def modelled_seconds(lengths: np.ndarray, seconds: dict[int, float], buckets: tuple[int, ...] | None) -> float:
    """Engine time for all sentences: static ``STATIC`` in input order (``None``), else sorted into ``buckets``.

    ``buckets=()`` means every timed length is a bucket and each batch takes the fastest that fits.
    """
    if buckets is None:
        return -(-len(lengths) // BATCH) * seconds[STATIC]
    total = 0.0
    ordered = np.sort(lengths, kind="stable")
    for i in range(0, len(ordered), BATCH):
        need = int(ordered[i : i + BATCH].max())
        if buckets:  # the smallest bucket that holds the batch
            total += seconds[min(n for n in buckets if n >= need)]
        else:  # the ceiling: the fastest timed length that holds it
            total += min(t for n, t in seconds.items() if n >= need)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="DeepSparse cores (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("CONFROUTE_SHARED", ROOT / ".." / "shared")))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deepsparse_lengths.json")
    ns = parser.parse_args()

    from confroute.predictors import DeepSparsePredictor
    from confroute.predictors.deepsparse import DEFAULT_BUCKETS, keep_faster_buckets

    shared = ns.shared.resolve()
    texts, _ = load_texts(shared / "data" / "sst2" / "dev.tsv")
    p = DeepSparsePredictor(shared / "models" / "minilm-sst2-pruned80", batch_size=BATCH, num_cores=ns.threads,
                            sequence_length=STATIC, buckets=None)
    lengths = p.encoder.tokenize(list(texts)).lengths
    seconds = p.time_buckets(LENGTHS, repeats=ns.repeats)
    for n, t in seconds.items():
        print(f"{n:>3} tokens: {1000 * t:7.1f} ms per batch of {BATCH}, {BATCH * n / t:7.0f} tokens/s", flush=True)

    tuned = keep_faster_buckets(seconds)
    sets: dict[str, tuple[int, ...] | None] = {
        f"static {STATIC}, input order": None,
        "buckets 16/32/64 (first default)": (16, 32, 64),
        "buckets " + "/".join(map(str, (b for b in DEFAULT_BUCKETS if b <= STATIC))) + " (default)":
            tuple(b for b in DEFAULT_BUCKETS if b <= STATIC),
        "buckets " + "/".join(map(str, tuned)) + " (tune_buckets rule)": tuned,
        "ceiling: fastest fitting length per batch": (),
    }
    base = modelled_seconds(lengths, seconds, None)
    modelled = {name: modelled_seconds(lengths, seconds, b) for name, b in sets.items()}
    result: dict[str, Any] = {
        "benchmark": "DeepSparse engine time per static sequence length, pruned80 MiniLM (issue 13)",
        "threads": ns.threads, "batch_size": BATCH, "repeats": ns.repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "seconds_per_batch": {str(n): t for n, t in seconds.items()},
        "sst2_dev_token_lengths": {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
                                   "max": int(lengths.max()), "share_13_to_32": float(np.mean((lengths > 12) & (lengths <= 32)))},
        "tuned_buckets": list(tuned),
        "modelled": {name: {"engine_s": s, "vs_static64": base / s} for name, s in modelled.items()},
    }
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"DeepSparse 1.8, pruned80 MiniLM, batch {BATCH}, {ns.threads} core(s), median of {ns.repeats} runs",
             "", "| tokens | ms per batch | tokens/s |", "|---:|---:|---:|"]
    lines += [f"| {n} | {1000 * t:.1f} | {BATCH * n / t:,.0f} |" for n, t in seconds.items()]
    lines += ["", "| 872 SST-2 dev sentences | engine seconds (modelled) | vs static 64 |", "|---|---:|---:|"]
    lines += [f"| {name} | {s:.2f} | {base / s:.2f}x |" for name, s in modelled.items()]
    ns.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
