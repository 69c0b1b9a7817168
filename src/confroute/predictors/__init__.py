"""Predictors: the models confroute routes between.

Heavy backends (Hugging Face, DeepSparse, ONNX Runtime) are imported lazily so that the core
stays numpy/scipy/scikit-learn only: ``from confroute.predictors import ONNXRuntimePredictor``
imports the backend's module on first access, and the backend's own library (onnxruntime,
deepsparse, transformers) only when a predictor is created.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import Predictor
from .callable import CallablePredictor
from .sklearn import SklearnPredictor

if TYPE_CHECKING:  # pragma: no cover
    from .deepsparse import DeepSparsePredictor
    from .huggingface import HFPipelinePredictor
    from .onnxruntime import ONNXRuntimePredictor
    from .remote import OIPPredictor
    from .openai import OpenAIPredictor
    from .causal_lm import HFCausalLMPredictor
    from ._cache import ResponseCache

#: Lazily imported names -> the submodule that defines them.
_LAZY = {
    "HFPipelinePredictor": "huggingface",
    "DeepSparsePredictor": "deepsparse",
    "ONNXRuntimePredictor": "onnxruntime",
    "OIPPredictor": "remote",
    "OpenAIPredictor": "openai",
    "HFCausalLMPredictor": "causal_lm",
    "ResponseCache": "_cache",
}

__all__ = [
    "Predictor",
    "CallablePredictor",
    "SklearnPredictor",
    "HFPipelinePredictor",
    "DeepSparsePredictor",
    "ONNXRuntimePredictor",
    "OIPPredictor",
    "OpenAIPredictor",
    "HFCausalLMPredictor",
    "ResponseCache",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
