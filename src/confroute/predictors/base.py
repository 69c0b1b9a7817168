"""The :class:`Predictor` interface every backend implements."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.batch import as_batch, n_rows, refuse_single_string, slice_rows
from ..core.types import PredictionError, Predictions

__all__ = ["Predictor", "as_sequence", "refuse_single_string"]

#: Deprecated name of :func:`confroute.core.batch.as_batch`.
as_sequence = as_batch


class Predictor(ABC):
    """Turns a batch of inputs into :class:`~confroute.Predictions`.

    Subclasses implement :meth:`_predict_batch`; :meth:`predict` splits the inputs into batches of
    ``batch_size``, validates what each batch returns (count, shape, finite values, rows that
    sum to one, stable class count) and concatenates the batches in input order.
    Async callers use :meth:`apredict`; the default runs :meth:`predict` in a worker thread, and
    predictors that are natively async override :meth:`_apredict_batch`.

    Attributes
    ----------
    classes : tuple or None
        Class values in column order, when the model names them (the user's own label values:
        integers stay integers).
    batch_size : int or None
        Largest batch handed to the model at once (``None``: the whole input in one call).
    name : str
        Used in error messages and in routing results.
    input_kind : {"text", None}
        ``"text"`` for a model that takes texts only (the text backends set it); ``None``:
        not declared. The Ray Serve ingress answers HTTP 400 to other inputs for a text model.
    cancellable : bool
        Whether :meth:`apredict` may stand in for :meth:`predict` and cancelling it stops the
        work (remote predictors: the request is dropped). A :class:`~confroute.Fallback` with a
        ``timeout`` then cancels a sync call at the timeout instead of abandoning it.
    """

    classes: tuple[Any, ...] | None = None
    cancellable: bool = False
    batch_size: int | None = None
    name: str = "predictor"
    input_kind: str | None = None

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
        inputs = as_batch(inputs)
        parts = [self._checked(self._predict_batch(chunk), n_rows(chunk)) for chunk in self._chunks(inputs)]
        return self._join(parts, n_rows(inputs))

    async def apredict(self, inputs: Sequence[Any]) -> Predictions:
        """Async :meth:`predict`; batches run one after another, in order."""
        inputs = as_batch(inputs)
        parts = []
        for chunk in self._chunks(inputs):
            parts.append(self._checked(await self._apredict_batch(chunk), n_rows(chunk)))
        return self._join(parts, n_rows(inputs))

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        """scikit-learn style shortcut: the probability matrix alone."""
        return self.predict(inputs).probs

    def _chunks(self, inputs: Sequence[Any]) -> list[Sequence[Any]]:
        n = n_rows(inputs)
        size = self.batch_size or max(n, 1)
        if size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {self.batch_size}")
        return [slice_rows(inputs, i, i + size) for i in range(0, n, size)]

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
