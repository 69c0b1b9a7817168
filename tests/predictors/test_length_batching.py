"""Length-aware batching: a call is tokenised once, batched by token length, returned in input order."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from _tiny_bert import TEXTS

from confroute.predictors._text import TokenizedTexts, length_order

# Repeated and reversed so that input order and length order differ and ties occur.
MANY = list(TEXTS) + [t + " and good" for t in reversed(TEXTS)] + list(TEXTS[:5])


def test_length_order_is_stable_and_invertible():
    lengths = np.array([5, 2, 9, 2, 5, 1])
    order = length_order(lengths)
    assert order.tolist() == [5, 1, 3, 0, 4, 2]
    assert (lengths[order][np.argsort(order)] == lengths).all()


def test_tokenized_texts_slices_keep_their_tokens():
    t = TokenizedTexts(["a", "bb", "ccc"], [[1], [1, 2], [1, 2, 3]], [[0], [0, 0], [0, 0, 0]], [False, True, False])
    part = t[1:]
    assert isinstance(part, TokenizedTexts) and list(part) == ["bb", "ccc"]
    assert part.lengths.tolist() == [2, 3] and part.truncated.tolist() == [True, False]
    assert t.take([2, 0]).ids == [[1, 2, 3], [1]]
    with pytest.raises(ValueError, match="one entry per text"):
        TokenizedTexts(["a"], [], [], [])


@pytest.fixture(scope="module")
def ort_pair(tiny_onnx_dir):
    pytest.importorskip("onnxruntime")
    from confroute.predictors import ONNXRuntimePredictor

    sorted_p = ONNXRuntimePredictor(tiny_onnx_dir, batch_size=4, num_threads=1)
    plain = ONNXRuntimePredictor(tiny_onnx_dir, batch_size=4, num_threads=1, sort_by_length=False)
    return sorted_p, plain


def _record_widths(predictor):
    widths = []
    real_run = predictor.session.run

    class Session:
        def run(self, names, feed):
            widths.append(feed["input_ids"].shape[1])
            return real_run(names, feed)

        def __getattr__(self, name):
            return getattr(predictor.session, name)

    return widths, Session()


def test_onnxruntime_sorted_batches_give_the_input_order_outputs(ort_pair):
    sorted_p, plain = ort_pair
    assert sorted_p.sort_by_length and not plain.sort_by_length  # on by default for float graphs
    assert not sorted_p.dynamic_quantized
    out, ref = sorted_p.predict(MANY), plain.predict(MANY)
    np.testing.assert_allclose(out.logits, ref.logits, atol=1e-5, rtol=0)
    # Each row is its own text's prediction: one text at a time gives the same.
    for i in (0, 7, len(MANY) - 1):
        np.testing.assert_allclose(out.logits[i], plain.predict([MANY[i]]).logits[0], atol=1e-5, rtol=0)
    asyncio.run(_async_matches(sorted_p, ref))


async def _async_matches(p, ref):
    out = await p.apredict(MANY)
    np.testing.assert_allclose(out.logits, ref.logits, atol=1e-5, rtol=0)


def test_onnxruntime_sorted_batches_pad_less(ort_pair, monkeypatch):
    sorted_p, plain = ort_pair
    lengths = sorted_p.encoder.tokenize(MANY).lengths
    widths = {}
    for key, p in (("sorted", sorted_p), ("plain", plain)):
        seen, session = _record_widths(p)
        monkeypatch.setattr(p, "session", session)
        p.predict(MANY)
        widths[key] = seen
    expected_sorted = [int(np.sort(lengths)[i:i + 4].max()) for i in range(0, len(MANY), 4)]
    expected_plain = [int(lengths[i:i + 4].max()) for i in range(0, len(MANY), 4)]
    assert widths["sorted"] == expected_sorted == sorted(expected_sorted)
    assert widths["plain"] == expected_plain
    assert sum(widths["sorted"]) < sum(widths["plain"])


def test_a_call_is_tokenised_once(ort_pair, monkeypatch):
    sorted_p, _ = ort_pair
    calls = []
    real = sorted_p.encoder._encode_fast

    def counting(texts):
        calls.append(len(texts))
        return real(texts)

    monkeypatch.setattr(sorted_p.encoder, "_encode_fast", counting)
    sorted_p.predict(MANY)
    assert calls == [len(MANY)]


def test_bad_input_is_named_by_its_position_in_the_call(ort_pair):
    sorted_p, _ = ort_pair
    texts = list(MANY)
    texts[17] = None
    with pytest.raises(TypeError, match="input 17 is None"):
        sorted_p.predict(texts)


def test_hf_pipeline_sorts_batches_and_restores_order(tiny_model_dir):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from confroute.predictors import HFPipelinePredictor

    p = HFPipelinePredictor(tiny_model_dir, batch_size=4, num_threads=1)
    plain = HFPipelinePredictor(p.pipeline, batch_size=4, num_threads=1, sort_by_length=False)
    seen = []
    real_pipeline = p.pipeline

    class Recorder:
        def __call__(self, texts, **kwargs):
            seen.append(list(texts))
            return real_pipeline(texts, **kwargs)

        def __getattr__(self, name):
            return getattr(real_pipeline, name)

    p.pipeline = Recorder()
    out = p.predict(MANY)
    lengths = p._token_lengths(MANY)
    assert [t for batch in seen for t in batch] == [MANY[i] for i in length_order(lengths)]
    np.testing.assert_allclose(out.logits, plain.predict(MANY).logits, atol=1e-5, rtol=0)
