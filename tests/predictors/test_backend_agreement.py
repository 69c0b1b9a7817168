"""The three backends return the same probabilities and labels on the same texts, in input order."""

from __future__ import annotations

import socket
import warnings

import numpy as np
import pytest
from _tiny_bert import CLASSES, TEXTS, _toy_data

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from confroute.predictors import HFPipelinePredictor, ONNXRuntimePredictor  # noqa: E402

ATOL = 1e-4
# 13 texts: batch sizes that divide it (1, 13), that do not (4, 5), and one larger than it (32).
BATCH_SIZES = [1, 4, 5, 13, 32]


def _deepsparse_usable() -> bool:
    from confroute.predictors.deepsparse import import_deepsparse

    try:
        import_deepsparse()
    except ImportError:
        return False
    return True


HAS_DEEPSPARSE = _deepsparse_usable()


def _backends(model_dir, onnx_dir, batch_size):
    """All three backends, DeepSparse only where it can run (Python < 3.12, numpy < 2)."""
    out = {
        "hf": HFPipelinePredictor(model_dir, batch_size=batch_size, num_threads=1),
        "onnxruntime": ONNXRuntimePredictor(onnx_dir, batch_size=batch_size, num_threads=1),
    }
    if HAS_DEEPSPARSE:
        from confroute.predictors import DeepSparsePredictor

        # sequence_length = the tiny model's max_length (64), so all backends truncate alike.
        out["deepsparse"] = DeepSparsePredictor(onnx_dir, batch_size=batch_size, num_cores=1, sequence_length=64)
    return out


def test_deepsparse_is_part_of_the_comparison_where_supported():
    import sys

    if sys.version_info < (3, 12) and np.__version__.startswith("1."):
        pytest.importorskip("deepsparse")
        assert HAS_DEEPSPARSE


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """Each text through the HF pipeline on its own: no padding, no batching."""
    hf = HFPipelinePredictor(tiny_model_dir, batch_size=1, num_threads=1)
    return [hf.predict([t]) for t in TEXTS]


def test_tiny_model_is_a_real_classifier_with_spread_confidences(tiny_model_dir):
    # The agreement below would be vacuous on a constant model.
    hf = HFPipelinePredictor(tiny_model_dir, batch_size=32, num_threads=1)
    texts, labels = _toy_data(200, seed=1)
    out = hf.predict(texts)
    assert np.mean(out.label_index == np.asarray(labels)) > 0.85
    conf = out.probs.max(axis=1)
    assert conf.min() < 0.7 and conf.max() > 0.75 and np.ptp(conf) > 0.1
    assert hf.classes == CLASSES


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_three_backends_agree(tiny_model_dir, tiny_onnx_dir, reference, batch_size):
    backends = _backends(tiny_model_dir, tiny_onnx_dir, batch_size)
    ref_probs = np.concatenate([r.probs for r in reference])
    ref_logits = np.concatenate([r.logits for r in reference])
    for name, predictor in backends.items():
        out = predictor.predict(TEXTS)
        assert len(out) == len(TEXTS), name
        assert out.classes == CLASSES, name
        np.testing.assert_allclose(out.probs, ref_probs, atol=ATOL, rtol=0, err_msg=name)
        np.testing.assert_allclose(out.logits, ref_logits, atol=ATOL, rtol=0, err_msg=name)
        np.testing.assert_array_equal(out.label_index, ref_probs.argmax(axis=1), err_msg=name)


def test_reference_has_both_labels_and_unsure_rows(reference):
    probs = np.concatenate([r.probs for r in reference])
    assert set(probs.argmax(axis=1)) == {0, 1}
    assert ((probs.max(axis=1) > 0.55) & (probs.max(axis=1) < 0.9)).any()


def test_order_follows_inputs(tiny_model_dir, tiny_onnx_dir):
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = [TEXTS[i] for i in perm]
    for predictor in _backends(tiny_model_dir, tiny_onnx_dir, 4).values():
        base = predictor.predict(TEXTS).probs
        np.testing.assert_allclose(predictor.predict(shuffled).probs, base[perm], atol=ATOL, rtol=0)


def test_truncation_agrees_across_backends(tiny_model_dir, tiny_onnx_dir):
    long_text = " ".join(["good film but boring plot ,"] * 20)  # ~120 tokens, model limit is 64
    texts = [long_text, "good", long_text + " bad"]
    outs = []
    for predictor in _backends(tiny_model_dir, tiny_onnx_dir, 2).values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outs.append(predictor.predict(texts).probs)
    # Text 0 and 2 differ only after the cut, so truncation makes them identical.
    for probs in outs:
        np.testing.assert_allclose(probs[0], probs[2], atol=1e-6)
        np.testing.assert_allclose(probs, outs[0], atol=ATOL, rtol=0)


def _block_network(monkeypatch):
    """Record and refuse every DNS lookup and non-local connection; returns the record."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access blocked by test")

    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family == getattr(socket, "AF_UNIX", None):
            return real_connect(sock, address)
        refuse(address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", lambda sock, address: refuse(address))
    monkeypatch.setattr(socket, "create_connection", refuse)
    # Name lookups count too: this sandbox has no DNS, so a download attempt fails there first.
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # offline must come from confroute, not from the env
    return attempts


def test_the_network_block_catches_a_hub_download(monkeypatch):
    attempts = _block_network(monkeypatch)
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # skip huggingface_hub's retry back-off
    with pytest.raises(OSError, match="Hub id"):
        HFPipelinePredictor("hub:confroute-test/no-such-model")
    assert attempts, "a Hub download went unnoticed: the block below would prove nothing"


def test_no_backend_opens_a_network_connection(tiny_model_dir, tiny_onnx_dir, monkeypatch):
    attempts = _block_network(monkeypatch)
    predictors = _backends(tiny_model_dir, tiny_onnx_dir, 4)
    outs = [p.predict(TEXTS[:6]).probs for p in predictors.values()]
    assert attempts == []
    assert len(outs) == 2 + HAS_DEEPSPARSE
    for probs in outs[1:]:
        np.testing.assert_allclose(probs, outs[0], atol=ATOL, rtol=0)
