"""Wrap any function (sync or async) as a :class:`Predictor`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ..core.classes import as_classes
from ..core.types import Predictions
from .base import Predictor

__all__ = ["CallablePredictor"]


class CallablePredictor(Predictor):
    """A predictor backed by a plain function.

    Parameters
    ----------
    fn : callable
        ``fn(batch) -> array (n, k)``; may be ``async def``. It may also return
        :class:`~confroute.Predictions` directly.
    output : {"probs", "logits"}
        What ``fn`` returns. Logits go through a softmax and are kept for calibration;
        probabilities are validated (rows sum to one) and never treated as logits.
    classes : sequence, optional
        Class names in column order.
    batch_size : int, optional
        Largest batch passed to ``fn`` at once; ``None`` passes everything in one call.
    name : str, optional

    Examples
    --------
    >>> import numpy as np
    >>> p = CallablePredictor(lambda xs: np.array([[1 - x, x] for x in xs]), classes=["no", "yes"])
    >>> p.predict([0.9, 0.2]).labels.tolist()
    ['yes', 'no']
    """

    def __init__(
        self,
        fn: Callable[[Sequence[Any]], Any],
        *,
        output: Literal["probs", "logits"] = "probs",
        classes: Sequence[Any] | None = None,
        batch_size: int | None = None,
        name: str | None = None,
    ) -> None:
        if output not in ("probs", "logits"):
            raise ValueError(f"output must be 'probs' or 'logits', got {output!r}")
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.output = output
        self.classes = as_classes(classes, source=name or "CallablePredictor")
        self.batch_size = batch_size
        self.name: str = name or str(getattr(fn, "__name__", "callable"))
        if self.name == "<lambda>":
            self.name = "callable"
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)
        )

    def _wrap(self, out: Any) -> Predictions:
        if isinstance(out, Predictions):  # validated like any other answer (range, row sums)
            classes = out.classes if out.classes is not None else self.classes
            return Predictions.from_probs(out.probs, classes, logits=out.logits, source=self.name)
        if self.output == "logits":
            return Predictions.from_logits(out, self.classes, source=self.name)
        return Predictions.from_probs(out, self.classes, source=self.name)

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        if self.is_async:
            raise TypeError(
                f"{self.name} is an async function: use `await router.aroute(...)` / `apredict`"
            )
        return self._wrap(self.fn(inputs))

    async def _apredict_batch(self, inputs: Sequence[Any]) -> Predictions:
        if self.is_async:
            return self._wrap(await self.fn(inputs))  # type: ignore[misc]
        return await super()._apredict_batch(inputs)
