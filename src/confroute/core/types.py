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
from ._optional import import_pandas
from ..exceptions import PredictionError

__all__ = ["Predictions", "RoutingResult", "PredictionError"]

#: Rows of a probability matrix must sum to one within this absolute tolerance. Generous enough
#: for float16 models exported to ONNX, strict enough to catch logits passed as probabilities.
PROB_SUM_ATOL = 1e-3



def _as_classes(classes: Sequence[Any] | None) -> tuple[str, ...] | None:
    if classes is None:
        return None
    names = tuple(str(c) for c in classes)
    if len(set(names)) != len(names):
        raise PredictionError(f"class names must be unique, got {list(names)}")
    return names


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
    classes : tuple of str or None
        Class names in column order, or ``None`` when the model does not name its classes.

    Use :meth:`from_probs` or :meth:`from_logits` to build one with validation.

    Examples
    --------
    >>> p = Predictions.from_logits([[2.0, 0.0], [0.0, 0.0]], classes=["neg", "pos"])
    >>> p.labels.tolist(), p.label_names.tolist()
    ([0, 0], ['neg', 'neg'])
    >>> round(float(p.probs[0, 0]), 4)
    0.8808
    """

    probs: np.ndarray
    logits: np.ndarray | None = None
    classes: tuple[str, ...] | None = None

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
    def labels(self) -> np.ndarray:
        """Predicted class index per row (argmax of the probabilities)."""
        return self.probs.argmax(axis=1)

    @property
    def label_names(self) -> np.ndarray:
        """Predicted class name per row (the index as a string when classes are unnamed)."""
        names = self.classes or tuple(str(i) for i in range(self.n_classes))
        return np.asarray(names, dtype=object)[self.labels]

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


def _checked_classes(classes: Sequence[Any] | None, k: int, source: str) -> tuple[str, ...] | None:
    names = _as_classes(classes)
    if names is not None and len(names) != k:
        raise PredictionError(f"{source} names {len(names)} classes {list(names)} but returned {k} columns")
    return names


@dataclass(frozen=True)
class RoutingResult:
    """One row per input, in input order: the final answer and how it was reached.

    Attributes
    ----------
    labels : ndarray of int, shape (n,)
        Final class index; ``-1`` where the input was abstained on (see ``on_error``).
    classes : tuple of str or None
        Class names shared by all stages (the first stage's order).
    confidence : ndarray of float, shape (n,)
        Score of the stage that answered (NaN where abstained).
    stage : ndarray of int, shape (n,)
        Index of the stage whose answer is final (``-1`` where abstained).
    stage_names : tuple of str
    stage_labels, stage_scores : ndarray, shape (n_stages, n)
        Each stage's own label and score for every input it saw (``-1`` / NaN elsewhere).
    reached : ndarray of bool, shape (n_stages, n)
        Whether the input was sent to the stage; this is what each input pays for.
    degraded : ndarray of bool, shape (n,)
        True where a stage failed on the input and an earlier answer (or none) was used.
    errors : ndarray of object, shape (n,)
        The error message for degraded inputs, else ``None``.
    cost : ndarray of float, shape (n,) or None
        Per-input cost when the router has a :class:`~confroute.CostModel`.
    """

    labels: np.ndarray
    classes: tuple[str, ...] | None
    confidence: np.ndarray
    stage: np.ndarray
    stage_names: tuple[str, ...]
    stage_labels: np.ndarray
    stage_scores: np.ndarray
    reached: np.ndarray
    degraded: np.ndarray
    errors: np.ndarray
    cost: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_stages(self) -> int:
        return len(self.stage_names)

    @property
    def label_names(self) -> np.ndarray:
        """Final class name per input (``None`` where abstained)."""
        names = self.classes or tuple(str(i) for i in range(int(self.labels.max(initial=0)) + 1))
        out = np.empty(len(self), dtype=object)
        ok = self.labels >= 0
        out[ok] = np.asarray(names, dtype=object)[self.labels[ok]]
        return out

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

    def _rows(self) -> list[dict[str, Any]]:
        names = self.label_names
        rows = []
        for i in range(len(self)):
            row: dict[str, Any] = {
                "label": int(self.labels[i]),
                "label_name": names[i],
                "confidence": _json_float(self.confidence[i]),
                "stage": int(self.stage[i]),
                "stage_name": self.stage_names[self.stage[i]] if self.stage[i] >= 0 else None,
                "degraded": bool(self.degraded[i]),
                "error": self.errors[i],
            }
            for s, sname in enumerate(self.stage_names):
                row[f"{sname}_label"] = int(self.stage_labels[s, i])
                row[f"{sname}_score"] = _json_float(self.stage_scores[s, i])
            if self.cost is not None:
                row["cost"] = float(self.cost[i])
            rows.append(row)
        return rows

    def to_pandas(self) -> Any:
        """One row per input (requires pandas)."""
        pd = import_pandas()
        return pd.DataFrame(self._rows())

    @staticmethod
    def concat(parts: Sequence[RoutingResult]) -> RoutingResult:
        """Join results of consecutive chunks routed by the same router, keeping order."""
        if not parts:
            raise ValueError("cannot concatenate zero RoutingResults")
        first = parts[0]
        has_cost = first.cost is not None
        return RoutingResult(
            labels=np.concatenate([p.labels for p in parts]),
            classes=first.classes,
            confidence=np.concatenate([p.confidence for p in parts]),
            stage=np.concatenate([p.stage for p in parts]),
            stage_names=first.stage_names,
            stage_labels=np.concatenate([p.stage_labels for p in parts], axis=1),
            stage_scores=np.concatenate([p.stage_scores for p in parts], axis=1),
            reached=np.concatenate([p.reached for p in parts], axis=1),
            degraded=np.concatenate([p.degraded for p in parts]),
            errors=np.concatenate([p.errors for p in parts]),
            cost=np.concatenate([p.cost for p in parts]) if has_cost else None,  # type: ignore[misc]
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


def _json_float(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)
