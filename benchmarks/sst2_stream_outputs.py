"""Per-sentence outputs of MiniLM int8 and MPNet int8 on the 872 SST-2 dev sentences, as a CSV.

The stream simulations of the monitoring certificates (``benchmarks/bench_stream_*.py``, the
validity suite) resample these rows; they are data this script generated, committed as
``benchmarks/results/sst2_dev_outputs.csv`` (label, each model's probability of class 1).

MiniLM int8 is the model ``benchmarks/make_int8.py`` makes (``bash tools/run.sh int8``: a
float32 ONNX export checked against PyTorch, then ONNX Runtime's dynamic int8 quantisation with
confroute's settings, in the numpy-2 quantisation environment). The committed CSV was made where
that environment was missing, in two steps with the same settings: ``export_to_onnx`` to float32
in the full environment, then ``onnxruntime.quantization.quantize_dynamic(QInt8, per_channel=True,
reduce_range=True, extra_options={"DefaultTensorType": 1})`` in a scratch numpy-2 environment
(onnx 1.23, onnxruntime 1.32); its dev accuracy, 0.8922, is the study's. One thread, batches of
32 sorted by length (MiniLM) as in ``examples/sst2_mpnet_pair.py``.

Usage::

    PYTHONPATH=src python benchmarks/sst2_stream_outputs.py --shared ../shared [--int8 DIR]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from confroute.integrations.io import load_texts
from confroute.predictors import ONNXRuntimePredictor

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("CONFROUTE_SHARED", ROOT / ".." / "shared")))
    p.add_argument("--cache", type=Path, default=Path("~/.cache/confroute").expanduser())
    p.add_argument("--int8", type=Path, help="the MiniLM int8 model folder (default: CACHE/minilm-sst2-dense-int8)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sst2_dev_outputs.csv")
    ns = p.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    shared = ns.shared.resolve()
    texts, y = load_texts(shared / "data" / "sst2" / "dev.tsv")
    texts = list(texts)
    int8 = ns.int8 or ns.cache / "minilm-sst2-dense-int8"
    if not (int8 / "model.onnx").is_file():
        raise SystemExit(f"{int8} is missing: run `bash tools/run.sh int8` (benchmarks/make_int8.py) first")
    cheap = ONNXRuntimePredictor(int8, num_threads=1, name="minilm-int8", sort_by_length=True).predict(texts)
    fb = ONNXRuntimePredictor(shared / "models" / "mpnet-sst2-int8", num_threads=1, name="mpnet-int8").predict(texts)
    y = np.asarray(y)
    print("accuracy MiniLM int8 %.4f, MPNet int8 %.4f" % (np.mean(cheap.label_index == y), np.mean(fb.label_index == y)))
    with open(ns.out, "w") as f:
        f.write("label,minilm_int8_p1,mpnet_int8_p1\n")
        for yi, a, b in zip(y, cheap.probs[:, 1], fb.probs[:, 1]):
            f.write(f"{int(yi)},{a:.9f},{b:.9f}\n")
    print(f"wrote {ns.out}")


if __name__ == "__main__":
    main()
