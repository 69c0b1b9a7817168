"""confroute: confidence-based routing of classifier predictions.

Accept a cheap model's confident answers, send only the uncertain inputs to an expensive
fallback, and measure what that saves and what it costs in accuracy.

The core needs numpy, scipy and scikit-learn only. Backends and plotting are optional extras,
imported on first use, so ``import confroute`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .core.cost import CostModel, Savings, StageCost
from .core.scores import margin, max_prob, neg_entropy
from .core.types import Predictions, RoutingResult
from .exceptions import (
    CircuitOpenError,
    ClassMismatchError,
    ConfrouteError,
    NotFittedError,
    PredictionError,
    StageTimeoutError,
    ThresholdWarning,
)
from .predictors import CallablePredictor, Predictor, SklearnPredictor
from .routing.cascade import Cascade, ThresholdRouter
from .routing.fallback import CircuitBreaker, Fallback

__version__ = "0.2.0"  # kept equal to pyproject.toml by tests/test_packaging.py

# Public names that live in modules with optional or heavier dependencies: imported on access.
_LAZY: dict[str, str] = {
    "TemperatureScaler": "confroute.calibration.calibrators",
    "VectorScaler": "confroute.calibration.calibrators",
    "IsotonicCalibrator": "confroute.calibration.calibrators",
    "HistogramBinning": "confroute.calibration.calibrators",
    "evaluate": "confroute.evaluation.evaluate",
    "Evaluation": "confroute.evaluation.evaluate",
    "OperatingPoint": "confroute.evaluation.evaluate",
    "EvaluationResult": "confroute.evaluation.evaluate",
    "choose_thresholds": "confroute.selection.choose",
    "choose_threshold": "confroute.selection.thresholds",
    "ThresholdChoice": "confroute.selection.thresholds",
    "PerClassChoice": "confroute.selection.per_class",
    "CascadeChoice": "confroute.selection._cascade_search",
    "HFPipelinePredictor": "confroute.predictors.huggingface",
    "DeepSparsePredictor": "confroute.predictors.deepsparse",
    "ONNXRuntimePredictor": "confroute.predictors.onnxruntime",
    "OIPPredictor": "confroute.predictors.remote",
    "export_to_onnx": "confroute.predictors.export",
    "add_hidden_output": "confroute.predictors.export",
    "CascadeEvaluation": "confroute.evaluation.evaluate",
    "choose_cascade_thresholds": "confroute.selection._deprecated",
    "evaluate_cascade": "confroute.evaluation.evaluate",
    "choose_per_class_thresholds": "confroute.selection.per_class",
    "compare_thresholds": "confroute.selection.per_class",
    "CorrectnessJudge": "confroute.calibration.judge",
    "cross_fit": "confroute.calibration.judge",
    "DriftMonitor": "confroute.evaluation.drift",
    "DriftReport": "confroute.evaluation.drift",
    "load_texts": "confroute.integrations.io",
    "RoutedClassifier": "confroute.integrations.sklearn",
}

__all__ = [
    "__version__",
    # values
    "Predictions",
    "RoutingResult",
    # errors and warnings
    "ConfrouteError",
    "PredictionError",
    "ClassMismatchError",
    "NotFittedError",
    "ThresholdWarning",
    # predictors
    "Predictor",
    "CallablePredictor",
    "SklearnPredictor",
    "HFPipelinePredictor",
    "DeepSparsePredictor",
    "ONNXRuntimePredictor",
    "OIPPredictor",
    "export_to_onnx",
    "add_hidden_output",
    # routing
    "Cascade",
    "ThresholdRouter",
    "Fallback",
    "CircuitBreaker",
    "CircuitOpenError",
    "StageTimeoutError",
    "max_prob",
    "margin",
    "neg_entropy",
    # cost
    "CostModel",
    "StageCost",
    "Savings",
    # calibration and evaluation
    "TemperatureScaler",
    "VectorScaler",
    "IsotonicCalibrator",
    "HistogramBinning",
    "evaluate",
    "Evaluation",
    "OperatingPoint",
    "choose_thresholds",
    "ThresholdChoice",
    "PerClassChoice",
    "CascadeChoice",
    # deprecated aliases (one release): see CHANGELOG
    "EvaluationResult",
    "choose_threshold",
    # cascades, per-class thresholds, learned judge, drift
    "CascadeEvaluation",
    "evaluate_cascade",
    "choose_cascade_thresholds",
    "choose_per_class_thresholds",
    "compare_thresholds",
    "CorrectnessJudge",
    "cross_fit",
    "DriftMonitor",
    "DriftReport",
    # io and scikit-learn
    "load_texts",
    "RoutedClassifier",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'confroute' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from .evaluation.evaluate import CascadeEvaluation, Evaluation, OperatingPoint, evaluate_cascade
    from .selection._cascade_search import CascadeChoice
    from .selection._deprecated import choose_cascade_thresholds
    from .selection.choose import choose_thresholds
    from .selection.per_class import PerClassChoice
    from .evaluation.drift import DriftMonitor, DriftReport
    from .calibration.judge import CorrectnessJudge, cross_fit
    from .selection.per_class import choose_per_class_thresholds, compare_thresholds
    from .calibration.calibrators import HistogramBinning, IsotonicCalibrator, TemperatureScaler, VectorScaler
    from .evaluation.evaluate import EvaluationResult, evaluate
    from .predictors.export import add_hidden_output, export_to_onnx
    from .integrations.io import load_texts
    from .integrations.sklearn import RoutedClassifier
    from .predictors.deepsparse import DeepSparsePredictor
    from .predictors.huggingface import HFPipelinePredictor
    from .predictors.onnxruntime import ONNXRuntimePredictor
    from .predictors.remote import OIPPredictor
    from .selection.thresholds import ThresholdChoice, choose_threshold
