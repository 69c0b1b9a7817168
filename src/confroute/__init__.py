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
    LabelError,
    PredictionError,
    StageTimeoutError,
    ThresholdWarning,
)
from .predictors import CallablePredictor, Predictor, SklearnPredictor
from .routing.cascade import Cascade, ThresholdRouter
from .routing.fallback import CircuitBreaker, Fallback, StageOutcome
from .routing.stage_loop import RowState, StageDecision

from .core._version import __version__

# Public names that live in modules with optional or heavier dependencies: imported on access.
_LAZY: dict[str, str] = {
    "NotFittedError": "confroute.exceptions",  # derives from scikit-learn's: made on first use
    "TemperatureScaler": "confroute.calibration.calibrators",
    "VectorScaler": "confroute.calibration.calibrators",
    "IsotonicCalibrator": "confroute.calibration.calibrators",
    "HistogramBinning": "confroute.calibration.calibrators",
    "ReliabilityTable": "confroute.calibration.metrics",
    "RiskCoverageCurve": "confroute.calibration.metrics",
    "CorrectnessJudge": "confroute.calibration.judge",
    "CrossFitJudge": "confroute.calibration.judge",
    "cross_fit": "confroute.calibration.judge",
    "evaluate": "confroute.evaluation.evaluate",
    "Evaluation": "confroute.evaluation.result",
    "OperatingPoint": "confroute.evaluation.table",
    "Sweep": "confroute.evaluation.sweep",
    "threshold_sweep": "confroute.evaluation.sweep",
    "pareto_front": "confroute.evaluation.sweep",
    "ParetoComparison": "confroute.evaluation.alternatives",
    "AccuracyThresholdDisplay": "confroute.evaluation.plotting",
    "CostThresholdDisplay": "confroute.evaluation.plotting",
    "CostAccuracyDisplay": "confroute.evaluation.plotting",
    "RiskCoverageDisplay": "confroute.evaluation.plotting",
    "ReliabilityDisplay": "confroute.evaluation.plotting",
    "DriftMonitor": "confroute.evaluation.drift",
    "DriftReport": "confroute.evaluation.drift",
    "choose_thresholds": "confroute.selection.choose",
    "cross_fit_thresholds": "confroute.selection.crossfit",
    "CrossFitResult": "confroute.selection.crossfit",
    "Choice": "confroute.core.choice",
    "ThresholdChoice": "confroute.selection.choices",
    "PerClassChoice": "confroute.selection.choices",
    "CascadeChoice": "confroute.selection.choices",
    "compare_thresholds": "confroute.selection.per_class",
    "ThresholdComparison": "confroute.selection.per_class",
    "HFPipelinePredictor": "confroute.predictors.huggingface",
    "DeepSparsePredictor": "confroute.predictors.deepsparse",
    "ONNXRuntimePredictor": "confroute.predictors.onnxruntime",
    "OIPPredictor": "confroute.predictors.remote",
    "OpenAIPredictor": "confroute.predictors.openai",
    "HFCausalLMPredictor": "confroute.predictors.causal_lm",
    "LLMPrompt": "confroute.predictors._llm_prompt",
    "LLMCall": "confroute.predictors._llm_prompt",
    "TokenUsage": "confroute.predictors._llm_prompt",
    "ClassScores": "confroute.predictors._llm_prompt",
    "ResponseCache": "confroute.predictors._cache",
    "TokenPrice": "confroute.core.cost",
    "export_to_onnx": "confroute.export",
    "quantize_onnx": "confroute.export",
    "add_hidden_output": "confroute.export",
    "ExportResult": "confroute.export",
    "QuantizeResult": "confroute.export",
    "HiddenOutputResult": "confroute.export",
    "load_texts": "confroute.integrations.io",
    "LabelledTexts": "confroute.integrations.io",
    "RoutedClassifier": "confroute.integrations.sklearn",
    "evaluate_cascade": "confroute.evaluation.evaluate",
    "choose_threshold": "confroute.selection.thresholds",
    "choose_cascade_thresholds": "confroute.selection._deprecated",
    "choose_per_class_thresholds": "confroute.selection.per_class",
    "CertificateMonitor": "confroute.monitoring.monitor",
    "MonitoredResult": "confroute.monitoring.monitor",
    "StreamCertificate": "confroute.monitoring.sequential",
    "StreamRecords": "confroute.monitoring.records",
    "PolicyAction": "confroute.monitoring.sequential",
    "certify_stream": "confroute.monitoring.sequential",
    "SQLiteLedger": "confroute.monitoring.ledger",
    "PostgresLedger": "confroute.monitoring.ledger",
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
    "LabelError",
    "CircuitOpenError",
    "StageTimeoutError",
    # predictors
    "Predictor",
    "CallablePredictor",
    "SklearnPredictor",
    "HFPipelinePredictor",
    "DeepSparsePredictor",
    "ONNXRuntimePredictor",
    "OIPPredictor",
    # LLM stages
    "OpenAIPredictor",
    "HFCausalLMPredictor",
    "LLMPrompt",
    "LLMCall",
    "TokenUsage",
    "ClassScores",
    "ResponseCache",
    "TokenPrice",
    # export
    "export_to_onnx",
    "quantize_onnx",
    "add_hidden_output",
    "ExportResult",
    "QuantizeResult",
    "HiddenOutputResult",
    # routing
    "Cascade",
    "ThresholdRouter",
    "Fallback",
    "CircuitBreaker",
    "StageOutcome",
    "StageDecision",
    "RowState",
    "max_prob",
    "margin",
    "neg_entropy",
    # cost
    "CostModel",
    "StageCost",
    "Savings",
    # calibration
    "TemperatureScaler",
    "VectorScaler",
    "IsotonicCalibrator",
    "HistogramBinning",
    "ReliabilityTable",
    "RiskCoverageCurve",
    "CorrectnessJudge",
    "CrossFitJudge",
    "cross_fit",
    # evaluation
    "evaluate",
    "Evaluation",
    "OperatingPoint",
    "Sweep",
    "threshold_sweep",
    "pareto_front",
    "ParetoComparison",
    "AccuracyThresholdDisplay",
    "CostThresholdDisplay",
    "CostAccuracyDisplay",
    "RiskCoverageDisplay",
    "ReliabilityDisplay",
    "DriftMonitor",
    "DriftReport",
    # selection: one entry point, one choice type
    "choose_thresholds",
    "cross_fit_thresholds",
    "CrossFitResult",
    "Choice",
    "ThresholdChoice",
    "PerClassChoice",
    "CascadeChoice",
    "compare_thresholds",
    "ThresholdComparison",
    # io and scikit-learn
    "load_texts",
    "LabelledTexts",
    "RoutedClassifier",
    # monitoring a deployed router (certificates from live traffic)
    "CertificateMonitor",
    "MonitoredResult",
    "StreamCertificate",
    "StreamRecords",
    "PolicyAction",
    "certify_stream",
    "SQLiteLedger",
    "PostgresLedger",
]


def __getattr__(name: str) -> Any:
    if name in ("EvaluationResult", "CascadeEvaluation"):  # classes renamed in 0.2: warn on every access
        from .core._deprecation import warn_renamed
        from .evaluation.evaluate import RENAMED_CLASSES

        warn_renamed(f"confroute.{name}", f"confroute.{RENAMED_CLASSES[name]}")
        return __getattr__(RENAMED_CLASSES[name])
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'confroute' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


#: Old names that still resolve (with a DeprecationWarning at the user's line) until 0.3; they are
#: not in ``__all__``. CHANGELOG.md's migration table gives each one's replacement.
DEPRECATED_NAMES = (
    "EvaluationResult",
    "CascadeEvaluation",
    "evaluate_cascade",
    "choose_threshold",
    "choose_cascade_thresholds",
    "choose_per_class_thresholds",
)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from .exceptions import NotFittedError
    from .calibration.calibrators import HistogramBinning, IsotonicCalibrator, TemperatureScaler, VectorScaler
    from .calibration.metrics import ReliabilityTable, RiskCoverageCurve
    from .calibration.judge import CorrectnessJudge, CrossFitJudge, cross_fit
    from .evaluation.evaluate import CascadeEvaluation, EvaluationResult, evaluate, evaluate_cascade  # noqa: F401
    from .evaluation.result import Evaluation
    from .evaluation.table import OperatingPoint
    from .evaluation.sweep import Sweep, pareto_front, threshold_sweep
    from .evaluation.alternatives import ParetoComparison
    from .evaluation.plotting import AccuracyThresholdDisplay, CostAccuracyDisplay, CostThresholdDisplay, ReliabilityDisplay, RiskCoverageDisplay
    from .evaluation.drift import DriftMonitor, DriftReport
    from .selection.choose import choose_thresholds
    from .selection.crossfit import CrossFitResult, cross_fit_thresholds
    from .core.choice import Choice
    from .selection.choices import CascadeChoice, PerClassChoice, ThresholdChoice
    from .selection.per_class import ThresholdComparison, choose_per_class_thresholds, compare_thresholds
    from .predictors.huggingface import HFPipelinePredictor
    from .predictors.deepsparse import DeepSparsePredictor
    from .predictors.onnxruntime import ONNXRuntimePredictor
    from .predictors.remote import OIPPredictor
    from .predictors.openai import OpenAIPredictor
    from .predictors.causal_lm import HFCausalLMPredictor
    from .predictors._llm_prompt import ClassScores, LLMCall, LLMPrompt, TokenUsage
    from .predictors._cache import ResponseCache
    from .core.cost import TokenPrice
    from .export import ExportResult, HiddenOutputResult, QuantizeResult, add_hidden_output, export_to_onnx, quantize_onnx
    from .integrations.io import LabelledTexts, load_texts
    from .integrations.sklearn import RoutedClassifier
    from .selection.thresholds import choose_threshold
    from .selection._deprecated import choose_cascade_thresholds
    from .monitoring.ledger import PostgresLedger, SQLiteLedger
    from .monitoring.monitor import CertificateMonitor, MonitoredResult
    from .monitoring.records import StreamRecords
    from .monitoring.sequential import PolicyAction, StreamCertificate, certify_stream
