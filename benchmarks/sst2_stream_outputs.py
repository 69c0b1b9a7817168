"""Per-sentence outputs of MiniLM int8 and MPNet int8 on the 872 SST-2 dev sentences, as a CSV.

The stream simulations of the monitoring certificates (``benchmarks/bench_stream_*.py``, the
validity suite) resample these rows; they are data this script generated, committed as
``benchmarks/results/sst2_dev_outputs.csv`` (label, each model's probability of class 1).

MiniLM int8 is made as ``benchmarks/make_int8.py`` makes it (float32 ONNX export checked against
PyTorch, then ONNX Runtime's dynamic int8 quantisation with confroute's settings); when the
onnx>=1.16 quantisation environment is missing, this script calls ``quantize_dynamic`` with the
same settings directly (onnx 1.14 of the full environment quantises this graph fine). One
thread, batches of 32 sorted by length (MiniLM) as in ``examples/sst2_mpnet_pair.py``.

Usage::

    PYTHONPATH=src python benchmarks/sst2_stream_outputs.py --shared ../shared
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from confroute.export import export_to_onnx
from confroute.integrations.io import load_texts
from confroute.predictors import ONNXRuntimePredictor

ROOT = Path(__file__).resolve().parents[1]


def minilm_int8(shared: Path, out: Path) -> Path:
    if (out / "model.onnx").is_file():
        return out
    import shutil

    from onnxruntime import quantization
    with tempfile.TemporaryDirectory(prefix="monstat-fp32-") as tmp:
        export_to_onnx(shared / "models" / "minilm-sst2-dense", tmp)
        out.mkdir(parents=True, exist_ok=True)
        for f in Path(tmp).iterdir():
            if f.name != "model.onnx":
                shutil.copy(f, out / f.name)
        logging.getLogger().setLevel(logging.ERROR)
        quantization.quantize_dynamic(Path(tmp) / "model.onnx", out / "model.onnx",
                                      weight_type=quantization.QuantType.QInt8, per_channel=True,
                                      reduce_range=True, extra_options={"DefaultTensorType": 1})
    return out


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
        int8 = minilm_int8(shared, int8)
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
