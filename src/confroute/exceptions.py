"""Every error and warning confroute raises, with one common base class each.

Catch :class:`ConfrouteError` to handle any problem the library reports itself; the concrete
classes also derive from the built-in exception a caller would expect (``ValueError`` for bad
values, ``TimeoutError`` for timeouts, ...), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "ConfrouteError",
    "PredictionError",
    "ClassMismatchError",
    "NotFittedError",
    "CircuitOpenError",
    "StageTimeoutError",
    "RemoteStageError",
    "RemoteUnavailableError",
    "ExportMismatchError",
    "CLIError",
    "ConfrouteWarning",
    "ThresholdWarning",
    "CalibrationWarning",
]


class ConfrouteError(Exception):
    """Base class of every exception confroute raises on purpose."""


class PredictionError(ConfrouteError, ValueError):
    """A predictor returned something that is not a valid batch of class probabilities."""


class ClassMismatchError(PredictionError):
    """Labels, class names or stages do not describe the same set of classes.

    The message names both sets and how to make them match (declare ``classes=...``, pass a
    label map, or use the model's own class values).
    """


if TYPE_CHECKING:
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

    class NotFittedError(ConfrouteError, _SklearnNotFittedError):
        """An estimator was used before ``fit`` (also a scikit-learn ``NotFittedError``)."""

else:

    def __getattr__(name: str) -> Any:
        """``NotFittedError`` is made on first use: it derives from scikit-learn's, and importing
        scikit-learn (which imports SciPy and pandas) would make ``import confroute`` take seconds."""
        if name != "NotFittedError":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

        class NotFittedError(ConfrouteError, _SklearnNotFittedError):
            """An estimator was used before ``fit`` (also a scikit-learn ``NotFittedError``)."""

        NotFittedError.__qualname__ = "NotFittedError"  # pickled by name, like the other classes
        globals()["NotFittedError"] = NotFittedError
        return NotFittedError


class CircuitOpenError(ConfrouteError, RuntimeError):
    """The circuit breaker is open: the stage failed too often and is resting."""


class StageTimeoutError(ConfrouteError, TimeoutError):
    """A stage call ran past its timeout."""


class RemoteStageError(ConfrouteError, ConnectionError):
    """A remote stage (a model server) refused a request: a wrong model name, input or output.

    ``status`` is the HTTP status. A retry would get the same answer; under a
    :class:`~confroute.Fallback` it still counts as a failure for the circuit breaker and
    ``on_error``.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RemoteUnavailableError(RemoteStageError):
    """A remote stage gave no usable answer: connection refused or reset, 429, 5xx.

    Worth retrying; ``Fallback(..., retry_on=(RemoteUnavailableError, StageTimeoutError))``
    retries these (and timeouts) but not :class:`RemoteStageError` itself.
    """


class ExportMismatchError(ConfrouteError, RuntimeError):
    """The exported ONNX model does not reproduce the PyTorch logits within tolerance."""


class LabelError(ConfrouteError, ValueError):
    """Labels a :class:`~confroute.monitoring.CertificateMonitor` cannot count: unknown ids, ids
    never sent for labelling, duplicates, or labels outside the classes. Nothing of the offending
    call is stored."""


class CLIError(ConfrouteError):
    """A problem with a command's inputs, reported as one line without a traceback."""


class ConfrouteWarning(UserWarning):
    """Base class of every warning confroute issues."""


class ThresholdWarning(ConfrouteWarning):
    """No threshold meets the target; the returned choice is the safe end."""


class CalibrationWarning(ConfrouteWarning):
    """A calibrator was given suspicious input or hit the edge of its search range."""
