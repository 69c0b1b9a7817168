"""The Ray path with the ONNX Runtime backend (tiny BERT) gives what ``router.route`` gives.

Lives next to the backend tests to reuse their session fixture ``tiny_onnx_dir`` (the model is
built and exported once per test session); starts its own local Ray instance.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("ray", reason="the Ray tests need Ray Data: pip install 'confroute[ray]'")

from _ray_helpers import assert_same_routing, local_ray  # noqa: E402
from _tiny_bert import CLASSES, TEXTS  # noqa: E402

from confroute import CallablePredictor, Fallback, ThresholdRouter  # noqa: E402
from confroute.integrations.frames import result_column_names, route_dataframe  # noqa: E402
from confroute.predictors import ONNXRuntimePredictor  # noqa: E402
from confroute.integrations.ray import route_dataset  # noqa: E402

# ONNX Runtime pads each batch to its longest text, and Ray batches rows differently from
# route(): probabilities agree to float32 precision, not bit for bit.
ONNX_CLOSE = dict(rtol=1e-5, atol=1e-6)


def word_count_model(texts):
    """A stand-in 'big model' over texts; it fails on any batch with an unknown word."""
    if any("zebra" in t for t in texts):
        raise RuntimeError("big model: unknown word")
    p = np.array([min(0.95, 0.5 + 0.05 * len(t.split())) for t in texts])
    return np.column_stack([1 - p, p])


def make_router(onnx_dir: str, threshold: float) -> ThresholdRouter:
    return ThresholdRouter(
        ONNXRuntimePredictor(onnx_dir, batch_size=8, num_threads=1, name="tiny_bert"),
        Fallback(CallablePredictor(word_count_model, classes=CLASSES, name="words"),
                 on_error="keep_previous", split_on_failure=True),
        threshold=threshold,
        names=("tiny_bert", "words"),
    )


@pytest.fixture(scope="module")
def ray_local():
    yield from local_ray(sys.modules[__name__])


def test_onnx_router_on_ray_matches_route(ray_local, tiny_onnx_dir):
    texts = [f"{t} {'!' * (i % 3)}".strip() for i, t in enumerate(TEXTS * 6)]
    df = pd.DataFrame({"text": texts})
    # A threshold in a wide gap between the primary's scores, so that float noise cannot move
    # a row across it.
    scores = np.unique(ONNXRuntimePredictor(tiny_onnx_dir, num_threads=1).predict(texts).probs.max(axis=1))
    gaps = np.diff(scores)
    middle = np.arange(len(gaps))[len(gaps) // 4 : 3 * len(gaps) // 4]
    i = middle[np.argmax(gaps[middle])]
    assert gaps[i] > 1e-4
    threshold = float((scores[i] + scores[i + 1]) / 2)

    factory = functools.partial(make_router, str(tiny_onnx_dir), threshold)
    ds = ray_local.data.from_pandas([df.iloc[:40], df.iloc[40:]])
    got = route_dataset(ds, factory, text_column="text", batch_size=[16, 4]).to_pandas()
    got = got.sort_values("id").reset_index(drop=True)
    expected = route_dataframe(df, factory(), text_column="text")
    assert got["text"].tolist() == texts
    assert_same_routing(got, expected, result_column_names(("tiny_bert", "words"), has_cost=False), ONNX_CLOSE)
    assert set(got["stage"]) == {0, 1}
    assert got["degraded"].sum() > 0  # the 'zebra' rows kept the tiny model's answer
    assert set(got["label"]) == set(CLASSES)
