"""A toy text router for the serving test of the audit loop: no model files, fast stages.

``small`` is sure of texts with "good" (pos) or "bad" (neg) and unsure otherwise; ``big`` says
neg for texts with "bad" or "not", pos otherwise, so "not good" is accepted by ``small`` and
answered differently by ``big`` (a disagreement that only a shadow call finds). ``big`` raises
while the file named by :func:`make_router`'s ``down`` exists (a failing fallback), and its
failures keep the small model's answer (``on_error="keep_previous"``); it waits while the file
``down + ".hold"`` exists (a fallback that does not answer yet).
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


class TextToy(CallablePredictor):
    input_kind = "text"


def small(texts: Sequence[Any]) -> np.ndarray:
    rows = [[0.05, 0.95] if "good" in t else [0.95, 0.05] if "bad" in t else [0.45, 0.55]
            for t in check_texts(texts, "small")]
    return np.array(rows).reshape(-1, 2)


def truth(text: str) -> str:
    """The big model's answer, and the label a labeller gives."""
    return "neg" if ("bad" in text or "not" in text) else "pos"


def make_big(down: str):
    def big(texts: Sequence[Any]) -> np.ndarray:
        if os.path.exists(down + ".hold"):
            with open(down + ".waiting", "a", encoding="utf-8") as fh:  # a call is in the replica
                fh.write("x")
        while os.path.exists(down + ".hold"):
            time.sleep(0.05)
        if os.path.exists(down):
            raise RuntimeError("the fallback is down")
        return np.array([[0.9, 0.1] if truth(t) == "neg" else [0.1, 0.9] for t in check_texts(texts, "big")]
                        ).reshape(-1, 2)

    return big


def logged_small(log: str):
    """``small`` that appends ``pid<TAB>text`` lines to the file ``log`` (which replica answered)."""
    def small_logged(texts: Sequence[Any]) -> np.ndarray:
        with open(log, "a", encoding="utf-8") as fh:
            fh.writelines(f"{os.getpid()}\t{t}\n" for t in texts)
        return small(texts)

    return small_logged


def make_router(down: str, log: str | None = None, threshold: float = 0.8) -> Cascade:
    first = small if log is None else logged_small(log)
    return Cascade(
        [Fallback(TextToy(first, classes=CLASSES, name="small")),
         Fallback(TextToy(make_big(down), classes=CLASSES, name="big"), on_error="keep_previous")],
        [threshold], cost_model=CostModel.per_sample([1.0, 10.0]), names=["small", "big"],
    )


def texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "not good", "meh", "not meh", "so good", "fine"]
    return [f"{words[k]} {i}" for i, k in enumerate(rng.integers(0, len(words), n))]
