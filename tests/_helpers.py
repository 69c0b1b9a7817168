"""Mock stages for tests: they record every call so tests can check who saw what."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from confroute import Predictions, Predictor


class SpyPredictor(Predictor):
    """Returns ``table[x]`` (a probability row) for each input ``x`` and records each batch."""

    def __init__(
        self,
        table: dict[Any, Sequence[float]] | Callable[[Any], Sequence[float]],
        classes: Sequence[str] | None = None,
        name: str = "spy",
        batch_size: int | None = None,
    ) -> None:
        self.table = table
        self.classes = None if classes is None else tuple(classes)
        self.name = name
        self.batch_size = batch_size
        self.calls: list[list[Any]] = []

    def _row(self, x: Any) -> Sequence[float]:
        return self.table(x) if callable(self.table) else self.table[x]

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        self.calls.append(list(inputs))
        return Predictions.from_probs(np.array([self._row(x) for x in inputs]), self.classes, source=self.name)


def binary(p_pos: float) -> list[float]:
    return [1.0 - p_pos, p_pos]


#: The shared models and data (``../shared`` beside the checkout, or ``$CONFROUTE_SHARED``).
SHARED = Path(os.environ.get("CONFROUTE_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()


def shared_models_reason() -> str | None:
    """Why the SST-2 command-line tests cannot run here (``None`` when they can)."""
    if not (SHARED / "models/minilm-sst2-pruned80/model.onnx").is_file():
        return f"needs the shared SST-2 models and data at {SHARED} (or set CONFROUTE_SHARED)"
    for mod in ("deepsparse", "transformers", "torch"):
        if importlib.util.find_spec(mod) is None:
            return f"needs {mod} (pip install 'confroute[all]')"
    return None
