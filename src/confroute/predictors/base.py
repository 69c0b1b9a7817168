"""The :class:`Predictor` interface every backend implements."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.types import PredictionError, Predictions

__all__ = ["Predictor", "as_sequence", "refuse_single_string"]


def refuse_single_string(inputs: Any) -> None:
    """A bare string is one input, not a batch (or stream) of characters: refuse it."""
    if isinstance(inputs, (str, bytes)):
        raise TypeError(
            "inputs must be a batch (list, array, ...), not a single string; wrap it: [text]"
        )


def as_sequence(inputs: Any) -> Sequence[Any]:
    """Accept a list, tuple, numpy array or pandas Series as a batch; refuse a bare string."""
    refuse_single_string(inputs)
    if hasattr(inputs, "to_numpy") and not isinstance(inputs, np.ndarray):
        inputs = inputs.to_numpy()
    if not hasattr(inputs, "__len__") or not hasattr(inputs, "__getitem__"):
        raise TypeError(
            f"inputs must be a sized, indexable batch (list, tuple, ndarray), got {type(inputs).__name__}"
        )
    return inputs


class Predictor(ABC):
    """Turns a batch of inputs into :class:`~confroute.Predictions`.

    Subclasses implement :meth:`_predict_batch`; :meth:`predict` splits the inputs into batches of
    ``batch_size``, validates what each batch returns (count, shape, finite values, rows that
    sum to one, stable class count) and concatenates the batches in input order.
    Async callers use :meth:`apredict`; the default runs :meth:`predict` in a worker thread, and
    predictors that are natively async override :meth:`_apredict_batch`.

    Attributes
    ----------
    classes : tuple of str or None
        Class names in column order, when the model names them.
    batch_size : int or None
        Largest batch handed to the model at once (``None``: the whole input in one call).
    name : str
        Used in error messages and in routing results.
    """

    classes: tuple[str, ...] | None = None
    batch_size: int | None = None
    name: str = "predictor"

    @abstractmethod
    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        """Predict one batch (``len(inputs) <= batch_size``)."""

    async def _apredict_batch(self, inputs: Sequence[Any]) -> Predictions:
        return await asyncio.to_thread(self._predict_batch, inputs)

    def predict(self, inputs: Sequence[Any]) -> Predictions:
        """Probabilities for every input, in input order.

        Parameters
        ----------
        inputs : sequence
            The batch; any length, including zero.

        Returns
        -------
        Predictions
            ``len(inputs)`` rows.
        """
        inputs = as_sequence(inputs)
        parts = [self._checked(self._predict_batch(chunk), len(chunk)) for chunk in self._chunks(inputs)]
        return self._join(parts, len(inputs))

    async def apredict(self, inputs: Sequence[Any]) -> Predictions:
        """Async :meth:`predict`; batches run one after another, in order."""
        inputs = as_sequence(inputs)
        parts = []
        for chunk in self._chunks(inputs):
            parts.append(self._checked(await self._apredict_batch(chunk), len(chunk)))
        return self._join(parts, len(inputs))

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        """scikit-learn style shortcut: the probability matrix alone."""
        return self.predict(inputs).probs

    def _chunks(self, inputs: Sequence[Any]) -> list[Sequence[Any]]:
        n = len(inputs)
        size = self.batch_size or max(n, 1)
        if size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {self.batch_size}")
        return [inputs[i : i + size] for i in range(0, n, size)]

    def _checked(self, out: Any, n: int) -> Predictions:
        if not isinstance(out, Predictions):
            raise PredictionError(f"{self.name}: _predict_batch must return Predictions, got {type(out).__name__}")
        if len(out) != n:
            raise PredictionError(f"{self.name} returned {len(out)} predictions for {n} inputs")
        if self.classes is not None and out.classes is None:
            out = Predictions(out.probs, out.logits, self.classes)
        return out

    def _join(self, parts: list[Predictions], n: int) -> Predictions:
        if not parts:
            k = len(self.classes) if self.classes else 0
            return Predictions(np.zeros((0, k)), None, self.classes)
        joined = Predictions.concat(parts)
        assert len(joined) == n
        return joined

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, batch_size={self.batch_size})"
