"""scikit-learn estimators (anything with ``predict_proba``) as predictors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.classes import as_classes
from ..core.types import Predictions
from .base import Predictor

__all__ = ["SklearnPredictor"]


class SklearnPredictor(Predictor):
    """Wrap a fitted estimator or pipeline that has ``predict_proba``.

    Classes come from ``estimator.classes_`` as they are (integers stay integers) unless given,
    so routing results and evaluation use the same labels as the estimator's ``predict``. When the estimator also has
    ``decision_function`` and ``use_decision_function=True``, its output is kept as logits
    (binary decision functions become ``[0, d]``), which temperature scaling can use.

    Parameters
    ----------
    estimator : fitted estimator
    classes : sequence, optional
    batch_size : int, optional
    use_decision_function : bool, default False
    name : str, optional

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> clf = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], ["a", "a", "b", "b"])
    >>> SklearnPredictor(clf).predict([[0.1], [2.9]]).labels.tolist()
    ['a', 'b']
    """

    def __init__(
        self,
        estimator: Any,
        *,
        classes: Sequence[Any] | None = None,
        batch_size: int | None = None,
        use_decision_function: bool = False,
        name: str | None = None,
    ) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise TypeError(f"{type(estimator).__name__} has no predict_proba; wrap it with CallablePredictor")
        self.estimator = estimator
        if classes is None and hasattr(estimator, "classes_"):
            classes = estimator.classes_
        self.classes = as_classes(classes, source=f"{type(estimator).__name__}.classes_")
        self.batch_size = batch_size
        self.use_decision_function = use_decision_function
        self.name = name or type(estimator).__name__

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        X = inputs if not isinstance(inputs, list) or _is_text(inputs) else np.asarray(inputs)
        probs = self.estimator.predict_proba(X)
        logits = None
        if self.use_decision_function and hasattr(self.estimator, "decision_function"):
            d = np.asarray(self.estimator.decision_function(X), dtype=np.float64)
            logits = np.stack([np.zeros_like(d), d], axis=1) if d.ndim == 1 else d
        return Predictions.from_probs(probs, self.classes, logits=logits, source=self.name)


def _is_text(inputs: list[Any]) -> bool:
    return bool(inputs) and isinstance(inputs[0], str)
