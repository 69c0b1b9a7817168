"""A KServe model server (kserve.ModelServer, v2 REST) with one toy classifier, for tests and benchmarks.

Run with the kserve venv (``tools/kserve_venv.sh``)::

    .cache/kserve-venv/bin/python tools/kserve/probs_server.py --http_port 8080 --dim 64

It serves model ``probs``: a fixed linear-softmax classifier (seed 0) over FP32/FP64 feature rows
of width ``--dim``, and over BYTES texts (features: length and word count). The output tensor
``probs`` (FP64, ``[n, 2]``) is binary when the request asks for it, as KServe's server decides
(``binary_data_output`` or ``binary_data`` on a requested output). KServe's model metadata lists
no tensors, so a client names them (OIPPredictor: ``classes``, ``output``, ``input_name``,
``output_name``).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


def probs_of(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    z = x @ w
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def text_features(texts: np.ndarray) -> np.ndarray:
    t = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in texts.ravel().tolist()]
    return np.array([[len(s) / 100.0, len(s.split()) / 20.0] for s in t], dtype=np.float64)


class Probs(Model):
    def __init__(self, name: str, dim: int) -> None:
        super().__init__(name)
        rng = np.random.default_rng(0)
        self.w = rng.normal(size=(dim, 2))
        self.w_text = np.array([[1.0, -1.0], [-2.0, 2.0]])
        self.ready = True

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        assert isinstance(payload, InferRequest)
        tensor = payload.inputs[0]
        x = tensor.as_numpy()
        if tensor.datatype == "BYTES":
            probs = probs_of(text_features(x), self.w_text)
        else:
            probs = probs_of(x.astype(np.float64).reshape(len(x), -1), self.w)
        out = InferOutput("probs", list(probs.shape), "FP64")
        out.set_data_from_numpy(probs, binary_data=False)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[out],
                             use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http_port", type=int, default=8080)
    parser.add_argument("--dim", type=int, default=64)
    args, _ = parser.parse_known_args()
    model = Probs("probs", args.dim)
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([model])
