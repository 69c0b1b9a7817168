"""add_hidden_output: the copy exposes the classifier head's input and leaves the logits alone."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from _tiny_bert import TEXTS

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from confroute.export import add_hidden_output  # noqa: E402
from confroute.predictors._text import TextEncoder  # noqa: E402


def _run(path, names, texts, model_dir):
    enc = TextEncoder(model_dir, max_length=64).encode(texts).arrays
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(names, {i.name: enc[i.name] for i in sess.get_inputs()})


def test_pooled_output_feeds_the_classifier_and_logits_are_unchanged(tiny_onnx_dir, tmp_path):
    digest = hashlib.sha256((tiny_onnx_dir / "model.onnx").read_bytes()).hexdigest()
    r = add_hidden_output(tiny_onnx_dir, tmp_path / "copy", check_texts=TEXTS)
    assert r.max_abs_diff == 0.0
    model = onnx.load(str(r.onnx_path))
    assert [o.name for o in model.graph.output] == ["logits", "pooled"]
    assert (tmp_path / "copy" / "tokenizer.json").is_file()
    # The source is only read.
    assert hashlib.sha256((tiny_onnx_dir / "model.onnx").read_bytes()).hexdigest() == digest

    logits, pooled = _run(r.onnx_path, ["logits", "pooled"], TEXTS, tiny_onnx_dir)
    (orig,) = _run(tiny_onnx_dir / "model.onnx", ["logits"], TEXTS, tiny_onnx_dir)
    np.testing.assert_array_equal(logits, orig)
    assert pooled.shape == (len(TEXTS), r.hidden_size)
    # The exposed tensor is what the classifier layer maps to the logits: logits = pooled W^T + b.
    final = next(n for n in model.graph.node if n.output[0] == "logits")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    w, b = inits[final.input[1]], inits[final.input[2]]
    np.testing.assert_allclose(pooled @ w.T + b, logits, atol=1e-5)
    assert np.ptp(pooled, axis=0).max() > 1e-3  # a real per-input state, not a constant


def test_refuses_to_overwrite_or_write_into_the_source(tiny_onnx_dir, tmp_path):
    with pytest.raises(ValueError, match="must differ"):
        add_hidden_output(tiny_onnx_dir, tiny_onnx_dir)
    add_hidden_output(tiny_onnx_dir, tmp_path / "copy")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        add_hidden_output(tiny_onnx_dir, tmp_path / "copy")
    with pytest.raises(ValueError, match="no tensor"):
        add_hidden_output(tiny_onnx_dir, tmp_path / "other", tensor="not-a-tensor")
