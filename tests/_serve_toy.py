"""A toy text router for the serving tests: no model files, so Ray Serve starts it quickly.

``small`` reads the word "good" or "bad" (sure) and is unsure otherwise (and fails on the text
"boom", under ``on_error="raise"``: an HTTP 500 of the service); unsure texts go to
``big`` (slow on purpose, so that a test can kill its replica while calls are in flight), whose
failures keep the small model's answer (``on_error="keep_previous"``). Both declare that they
take texts (``input_kind = "text"``), as the real text backends do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from confroute import CallablePredictor, Cascade, CostModel, Fallback
from confroute.predictors._text import check_texts

CLASSES = ("neg", "pos")
NAME = "toy"


class TextToy(CallablePredictor):
    """A text model (it refuses anything but strings, as the text backends do)."""

    input_kind = "text"


def small(texts: Sequence[Any]) -> np.ndarray:
    rows = []
    for t in check_texts(texts, "small"):
        if t == "boom":
            raise RuntimeError("the small model crashed on this input")
        rows.append([0.05, 0.95] if "good" in t else [0.95, 0.05] if "bad" in t else [0.45, 0.55])
    return np.array(rows).reshape(-1, 2)


#: Environment variable naming a file that ``big`` appends a line to when a call starts.
CALLS_LOG = "CONFROUTE_TOY_BIG_CALLS"


def big(texts: Sequence[Any]) -> np.ndarray:
    log = os.environ.get(CALLS_LOG)
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{len(texts)}\n")
    time.sleep(1.0)  # a slow model: a test can kill its replica while a call is in flight
    return np.array([[0.2, 0.8] for _ in check_texts(texts, "big")]).reshape(-1, 2)


def text_router() -> Cascade:
    return Cascade(
        [Fallback(TextToy(small, classes=CLASSES, name="small")),
         Fallback(TextToy(big, classes=CLASSES, name="big"), on_error="keep_previous")],
        [0.8], cost_model=CostModel.per_sample([1.0, 10.0]), names=["small", "big"],
    )
