"""An MLServer runtime that serves a confroute text classifier over the Open Inference Protocol.

MLServer (https://mlserver.readthedocs.io) loads this class when a model's
``model-settings.json`` names ``"implementation": "confroute_runtime.ConfrouteTextRuntime"`` and
this folder is on ``PYTHONPATH``. The model is one of confroute's own predictors (ONNX Runtime by
default), so what the server returns is exactly what the same predictor returns in-process.

Request: one ``BYTES`` input of shape ``[n]`` (the texts). Response: ``logits`` (``FP64``,
``[n, k]``) and ``probs`` (``FP64``, ``[n, k]``). The model metadata names the classes in the
``classes`` parameter of each output, which :class:`confroute.OIPPredictor` reads.

``model-settings.json`` ``parameters.uri`` is the model directory; ``parameters.extra`` may set
``backend`` (``"onnx"``, the default, or ``"deepsparse"``), ``num_threads`` and ``batch_size``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.errors import InferenceError
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    Parameters,
    ResponseOutput,
)


class ConfrouteTextRuntime(MLModel):
    """Serve a confroute text predictor (ONNX Runtime or DeepSparse) from a model directory."""

    async def load(self) -> bool:
        extra: dict[str, Any] = dict(self.settings.parameters.extra or {}) if self.settings.parameters else {}
        uri = self.settings.parameters.uri if self.settings.parameters else None
        if not uri:
            raise ValueError(f"model {self.name!r}: set parameters.uri to the model directory")
        backend = extra.get("backend", "onnx")
        threads = extra.get("num_threads")
        batch_size = int(extra.get("batch_size", 32))
        if backend == "onnx":
            from confroute.predictors.onnxruntime import ONNXRuntimePredictor

            self.predictor = ONNXRuntimePredictor(uri, num_threads=threads, batch_size=batch_size, name=self.name)
        elif backend == "deepsparse":
            from confroute.predictors.deepsparse import DeepSparsePredictor

            self.predictor = DeepSparsePredictor(uri, num_cores=threads, batch_size=batch_size, name=self.name)
        else:
            raise ValueError(f"model {self.name!r}: backend must be 'onnx' or 'deepsparse', got {backend!r}")
        return True

    async def metadata(self) -> MetadataModelResponse:
        meta = await super().metadata()
        classes = list(self.predictor.classes) if self.predictor.classes else None
        k = len(classes) if classes else -1
        meta.inputs = [MetadataTensor(name="text", datatype="BYTES", shape=[-1])]
        meta.outputs = [
            MetadataTensor(name=name, datatype="FP64", shape=[-1, k], parameters=Parameters(classes=classes))
            for name in ("logits", "probs")
        ]
        return meta

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if len(payload.inputs) != 1:
            raise InferenceError(f"send one BYTES input (the texts), got {len(payload.inputs)} inputs")
        texts = [str(t) for t in StringCodec.decode_input(payload.inputs[0])]
        preds = self.predictor.predict(texts)
        wanted = {o.name for o in payload.outputs} if payload.outputs else {"logits", "probs"}
        unknown = wanted - {"logits", "probs"}
        if unknown:
            raise InferenceError(f"unknown outputs {sorted(unknown)}; this model returns 'logits' and 'probs'")
        arrays = {"probs": preds.probs, "logits": preds.log_scores()}
        outputs = [
            ResponseOutput(name=name, datatype="FP64", shape=list(arrays[name].shape),
                           data=np.asarray(arrays[name], dtype=np.float64).ravel().tolist())
            for name in ("logits", "probs") if name in wanted
        ]
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=outputs)
