"""Value types that flow through confroute: :class:`Predictions` and :class:`RoutingResult`.

Both are frozen dataclasses over numpy arrays. They are data, not behaviour: every stage of the
library reads them and none mutates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _html
from ..exceptions import PredictionError
from . import schema
from ._deprecation import warn_renamed
from .classes import Classes, as_classes, class_labels

__all__ = ["Predictions", "RoutingResult", "PredictionError"]

#: Rows of a probability matrix must sum to one within this absolute tolerance. Generous enough
#: for float16 models exported to ONNX, strict enough to catch logits passed as probabilities.
PROB_SUM_ATOL = 1e-3



def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Predictions:
    """Class probabilities for a batch of inputs, as one stage produced them.

    Parameters
    ----------
    probs : ndarray of shape (n, k)
        Class probabilities; each row sums to one.
    logits : ndarray of shape (n, k) or None
        Unnormalised scores when the backend exposes them (needed for exact temperature scaling);
        ``None`` when only probabilities are available.
    classes : tuple or None
        Class values in column order, as the model's user knows them (integers stay integers,
        strings stay strings), or ``None`` when the model does not name its classes (then its
        classes are the column indices ``0 .. k-1``).

    Use :meth:`from_probs` or :meth:`from_logits` to build one with full validation (finite
    values, range, row sums); the plain constructor checks shapes and classes only.

    Examples
    --------
    >>> p = Predictions.from_logits([[2.0, 0.0], [0.0, 0.0]], classes=["neg", "pos"])
    >>> p.labels.tolist(), p.label_index.tolist()
    (['neg', 'neg'], [0, 0])
    >>> round(float(p.probs[0, 0]), 4)
    0.8808
    >>> Predictions.from_probs([[0.2, 0.8]], classes=[3, 7]).labels.tolist()  # ints stay ints
    [7]
    """

    probs: np.ndarray
    logits: np.ndarray | None = None
    classes: Classes | None = None

    def __post_init__(self) -> None:
        probs = np.asarray(self.probs)
        if probs.ndim != 2:
            raise PredictionError(f"probabilities must have shape (n_inputs, n_classes), got {probs.shape}")
        if self.logits is not None and np.shape(self.logits) != probs.shape:
            raise PredictionError(f"logits shape {np.shape(self.logits)} != probabilities shape {probs.shape}")
        if self.classes is not None:
            object.__setattr__(self, "classes", as_classes(self.classes, probs.shape[1], source="Predictions"))

    @classmethod
    def from_probs(
        cls,
        probs: Any,
        classes: Sequence[Any] | None = None,
        *,
        logits: Any = None,
        source: str = "predictor",
    ) -> Predictions:
        """Validate ``probs`` (shape, finiteness, range, row sums) and wrap them."""
        p = _check_matrix(probs, "probabilities", source)
        if ((p < -1e-6) | (p > 1 + 1e-6)).any():
            row = int(np.flatnonzero(((p < -1e-6) | (p > 1 + 1e-6)).any(axis=1))[0])
            raise PredictionError(
                f"{source} returned probabilities outside [0, 1] (row {row}: {p[row].tolist()}); "
                "if these are logits, declare output='logits'"
            )
        sums = p.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > PROB_SUM_ATOL)
        if bad.size:
            raise PredictionError(
                f"{source} returned probability rows that do not sum to 1: row {int(bad[0])} sums to "
                f"{float(sums[bad[0]]):.6f} ({bad.size} bad rows); if these are logits, declare "
                "output='logits'"
            )
        z = None if logits is None else _check_matrix(logits, "logits", source)
        if z is not None and z.shape != p.shape:
            raise PredictionError(f"{source}: logits shape {z.shape} != probabilities shape {p.shape}")
        return cls(np.clip(p, 0.0, 1.0), z, _checked_classes(classes, p.shape[1], source))

    @classmethod
    def from_logits(
        cls, logits: Any, classes: Sequence[Any] | None = None, *, source: str = "predictor"
    ) -> Predictions:
        """Validate ``logits`` and turn them into probabilities with a softmax."""
        z = _check_matrix(logits, "logits", source)
        return cls(softmax(z), z, _checked_classes(classes, z.shape[1], source))

    def __len__(self) -> int:
        return int(self.probs.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.probs.shape[1])

    @property
    def label_index(self) -> np.ndarray:
        """Predicted column index per row (argmax of the probabilities)."""
        return self.probs.argmax(axis=1)

    @property
    def labels(self) -> np.ndarray:
        """Predicted class per row, in the user's label space (the column index when unnamed)."""
        return class_labels(self.label_index, self.classes, self.n_classes)

    @property
    def label_names(self) -> np.ndarray:
        """Deprecated: the predicted classes as strings; use :attr:`labels`."""
        warn_renamed("Predictions.label_names", "Predictions.labels (class values; str() them if you need strings)")
        return np.asarray([str(v) for v in self.labels.tolist()], dtype=object)

    def log_scores(self) -> np.ndarray:
        """Logits when known, else log-probabilities.

        The two differ by a per-row constant, which softmax (and so temperature scaling) ignores.
        """
        if self.logits is not None:
            return self.logits
        return np.log(np.clip(self.probs, 1e-300, None))

    def take(self, index: np.ndarray) -> Predictions:
        """The rows at ``index``, in that order."""
        return Predictions(
            self.probs[index], None if self.logits is None else self.logits[index], self.classes
        )

    @staticmethod
    def concat(parts: Sequence[Predictions]) -> Predictions:
        """Stack batches of the same model row-wise."""
        if not parts:
            raise ValueError("cannot concatenate zero Predictions")
        first = parts[0]
        for p in parts[1:]:
            if p.classes != first.classes or p.n_classes != first.n_classes:
                raise PredictionError("cannot concatenate predictions over different classes")
        logits = None
        if all(p.logits is not None for p in parts):
            logits = np.concatenate([p.logits for p in parts])  # type: ignore[misc]
        return Predictions(np.concatenate([p.probs for p in parts]), logits, first.classes)


def _check_matrix(values: Any, what: str, source: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PredictionError(f"{source} returned {what} that are not numeric: {exc}") from None
    if arr.ndim != 2:
        raise PredictionError(
            f"{source} returned {what} of shape {arr.shape}; expected (n_inputs, n_classes)"
        )
    if arr.shape[1] < 2:
        raise PredictionError(f"{source} returned {what} with {arr.shape[1]} class(es); need >= 2")
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = (int(v) for v in np.argwhere(~finite)[0])
        raise PredictionError(
            f"{source} returned non-finite {what} (row {row}, column {col}: {arr[row, col]})"
        )
    return arr


def _checked_classes(classes: Sequence[Any] | None, k: int, source: str) -> Classes | None:
    return as_classes(classes, k, source=source)


@dataclass(frozen=True)
class RoutingResult:
    """One row per input, in input order: the final answer and how it was reached.

    Labels are in the user's label space, as scikit-learn's ``predict`` gives them: the class
    values of the stages (integers stay integers), or column indices when no stage names its
    classes. The column index is kept separately in :attr:`label_index`.

    Attributes
    ----------
    label_index : ndarray of int, shape (n,)
        Final column index in the cascade's class order; ``-1`` where the input was abstained
        on (see ``on_error``).
    classes : tuple or None
        Class values shared by all stages (the first stage's order).
    confidence : ndarray of float, shape (n,)
        Score of the stage that answered (NaN where abstained).
    stage : ndarray of int, shape (n,)
        Index of the stage whose answer is final (``-1`` where abstained).
    stage_names : tuple of str
    stage_label_index, stage_scores : ndarray, shape (n_stages, n)
        Each stage's own column index and score for every input it answered (``-1`` / NaN
        elsewhere).
    reached : ndarray of bool, shape (n_stages, n)
        Whether the input was sent to the stage; this is what each input pays for.
    degraded : ndarray of bool, shape (n,)
        True where a stage failed on the input and an earlier answer (or none) was used.
    errors : ndarray of object, shape (n,)
        The error message for degraded inputs, else ``None``.
    cost : ndarray of float, shape (n,) or None
        Per-input cost when the router has a :class:`~confroute.CostModel`.
    n_classes : int or None
        Number of classes (columns), when any stage answered.
    """

    label_index: np.ndarray
    classes: Classes | None
    confidence: np.ndarray
    stage: np.ndarray
    stage_names: tuple[str, ...]
    stage_label_index: np.ndarray
    stage_scores: np.ndarray
    reached: np.ndarray
    degraded: np.ndarray
    errors: np.ndarray
    cost: np.ndarray | None = field(default=None)
    n_classes: int | None = None

    def __len__(self) -> int:
        return int(self.label_index.shape[0])

    @property
    def n_stages(self) -> int:
        return len(self.stage_names)

    @property
    def labels(self) -> np.ndarray:
        """Final class per input in the user's label space (``None`` where abstained)."""
        return class_labels(self.label_index, self.classes)

    @property
    def stage_labels(self) -> np.ndarray:
        """Each stage's own class per input, shape ``(n_stages, n)`` (``None`` where it did not answer)."""
        return np.stack([class_labels(row, self.classes).astype(object) for row in self.stage_label_index]) \
            if self.n_stages else np.empty((0, len(self)), dtype=object)

    @property
    def label_names(self) -> np.ndarray:
        """Deprecated: the final classes as strings (``None`` where abstained); use :attr:`labels`."""
        warn_renamed("RoutingResult.label_names", "RoutingResult.labels (class values; str() them if you need strings)")
        return np.asarray([None if v is None else str(v) for v in self.labels.tolist()], dtype=object)

    @property
    def coverage(self) -> float:
        """Fraction of inputs answered by the first stage."""
        return float(np.mean(self.stage == 0)) if len(self) else 0.0

    @property
    def routed_fraction(self) -> float:
        """Fraction of inputs the first stage deferred to a later stage."""
        return float(np.mean(self.reached[1:].any(axis=0))) if len(self) and self.n_stages > 1 else 0.0

    @property
    def stage_counts(self) -> dict[str, int]:
        """How many inputs each stage answered (``"abstained"`` counts the rest)."""
        counts = {name: int(np.sum(self.stage == s)) for s, name in enumerate(self.stage_names)}
        counts["abstained"] = int(np.sum(self.stage < 0))
        return counts

    @property
    def failed_stage(self) -> np.ndarray:
        """Index of the stage that failed on each input, ``-1`` where none did.

        A failure makes an input final at the stage that failed, so that stage is the last one
        the input reached.
        """
        if not self.n_stages:
            return np.full(len(self), -1, dtype=np.int64)
        last = self.n_stages - 1 - np.argmax(self.reached[::-1], axis=0)
        return np.where(self.degraded & self.reached.any(axis=0), last, -1).astype(np.int64)

    @property
    def total_cost(self) -> float | None:
        return None if self.cost is None else float(self.cost.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary plus per-input rows."""
        return {
            "n": len(self),
            "classes": None if self.classes is None else list(self.classes),
            "stage_names": list(self.stage_names),
            "coverage": self.coverage,
            "routed_fraction": self.routed_fraction,
            "stage_counts": self.stage_counts,
            "total_cost": self.total_cost,
            "rows": self._rows(),
        }

    def columns(self) -> dict[str, np.ndarray]:
        """The per-input columns of the one routing output schema (:mod:`confroute.core.schema`),
        as numpy arrays of fixed types: ``stage`` is the stage index (int64), ``stage_name`` its
        name, and class-value columns are ``object`` arrays with ``None`` where missing."""
        return schema.result_columns(self, self.stage_names, self.classes, self.cost is not None)

    def _rows(self) -> list[dict[str, Any]]:
        return schema.json_rows(self.columns())

    def to_pandas(self) -> Any:
        """One row per input, the columns of :meth:`columns` with their dtypes (requires pandas)."""
        return schema.pandas_frame(self.columns())

    @staticmethod
    def concat(parts: Sequence[RoutingResult]) -> RoutingResult:
        """Join results of consecutive chunks routed by the same router, keeping order.

        Refuses parts that do not come from the same router: other stage names, other classes,
        or cost on some parts only.
        """
        if not parts:
            raise ValueError("cannot concatenate zero RoutingResults")
        first = parts[0]
        has_cost = first.cost is not None
        classes = first.classes
        n_classes = first.n_classes
        for i, p in enumerate(parts[1:], start=1):
            if p.stage_names != first.stage_names:
                raise ValueError(
                    f"cannot concatenate results of different routers: part {i} has stages "
                    f"{list(p.stage_names)}, part 0 has {list(first.stage_names)}"
                )
            if (p.cost is not None) != has_cost:
                raise ValueError(f"cannot concatenate results with and without cost (part {i} differs from part 0)")
            if p.classes is not None and classes is not None and p.classes != classes:
                raise ValueError(
                    f"cannot concatenate results over different classes: part {i} has {list(p.classes)}, "
                    f"earlier parts {list(classes)}"
                )
            if p.n_classes is not None and n_classes is not None and p.n_classes != n_classes:
                raise ValueError(f"cannot concatenate results over {p.n_classes} and {n_classes} classes")
            classes = classes if classes is not None else p.classes
            n_classes = n_classes if n_classes is not None else p.n_classes
        return RoutingResult(
            label_index=np.concatenate([p.label_index for p in parts]),
            classes=classes,
            confidence=np.concatenate([p.confidence for p in parts]),
            stage=np.concatenate([p.stage for p in parts]),
            stage_names=first.stage_names,
            stage_label_index=np.concatenate([p.stage_label_index for p in parts], axis=1),
            stage_scores=np.concatenate([p.stage_scores for p in parts], axis=1),
            reached=np.concatenate([p.reached for p in parts], axis=1),
            degraded=np.concatenate([p.degraded for p in parts]),
            errors=np.concatenate([p.errors for p in parts]),
            cost=np.concatenate([p.cost for p in parts]) if has_cost else None,  # type: ignore[misc]
            n_classes=n_classes,
        )

    def _repr_html_(self) -> str:
        return _html.routing_result_html(self)

    def __repr__(self) -> str:
        lines = [f"RoutingResult(n={len(self)}, stages={list(self.stage_names)})"]
        for name, count in self.stage_counts.items():
            if name == "abstained" and count == 0:
                continue
            share = count / len(self) if len(self) else 0.0
            lines.append(f"  {name:<16} {count:>8}  ({share:6.1%})")
        if self.degraded.any():
            lines.append(f"  degraded         {int(self.degraded.sum()):>8}")
        if self.cost is not None:
            lines.append(f"  total cost       {self.total_cost:.6g}")
        return "\n".join(lines)
