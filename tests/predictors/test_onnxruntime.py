"""ONNXRuntimePredictor: directory/file/session inputs, threads, static shapes, tokenizers, errors."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from _tiny_bert import CLASSES, TEXTS

ort = pytest.importorskip("onnxruntime")

from confroute.predictors import ONNXRuntimePredictor  # noqa: E402
from confroute.predictors._text import TextEncoder, default_max_length, model_classes  # noqa: E402


@pytest.fixture(scope="module")
def baseline(tiny_onnx_dir):
    return ONNXRuntimePredictor(tiny_onnx_dir, batch_size=32, num_threads=1).predict(TEXTS)


def test_reads_classes_and_limits_from_the_directory(tiny_onnx_dir, baseline):
    p = ONNXRuntimePredictor(tiny_onnx_dir, num_threads=1)
    assert p.classes == CLASSES == model_classes(tiny_onnx_dir)
    assert p.max_length == default_max_length(tiny_onnx_dir) == 64
    assert baseline.classes == CLASSES
    assert baseline.logits is not None and baseline.logits.shape == (len(TEXTS), 2)


def test_thread_count_is_set_on_the_session_only(tiny_onnx_dir):
    p = ONNXRuntimePredictor(tiny_onnx_dir, num_threads=1)
    opts = p.session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.inter_op_num_threads == 1
    assert ONNXRuntimePredictor(tiny_onnx_dir).session.get_session_options().intra_op_num_threads == 0


def test_onnx_file_path_and_session_give_the_same_outputs(tiny_onnx_dir, baseline):
    by_file = ONNXRuntimePredictor(tiny_onnx_dir / "model.onnx", batch_size=3)
    np.testing.assert_allclose(by_file.predict(TEXTS).probs, baseline.probs, atol=1e-6)
    session = ort.InferenceSession(str(tiny_onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="tokenizer="):
        ONNXRuntimePredictor(session)
    by_session = ONNXRuntimePredictor(session, tokenizer=tiny_onnx_dir, classes=CLASSES, max_length=64)
    np.testing.assert_allclose(by_session.predict(TEXTS).probs, baseline.probs, atol=1e-6)


def test_static_padding_gives_the_same_outputs(tiny_onnx_dir, baseline):
    p = ONNXRuntimePredictor(tiny_onnx_dir, batch_size=4, sequence_length=64)
    assert p.encoder.encode(["good"]).arrays["input_ids"].shape == (1, 64)
    np.testing.assert_allclose(p.predict(TEXTS).probs, baseline.probs, atol=1e-5, rtol=0)


def test_transformers_tokenizer_fallback_matches_tokenizer_json(tiny_onnx_dir, tmp_path, baseline):
    # Without tokenizer.json the encoder falls back to AutoTokenizer on vocab.txt.
    d = tmp_path / "no-json"
    shutil.copytree(tiny_onnx_dir, d)
    (d / "tokenizer.json").unlink()
    p = ONNXRuntimePredictor(d, batch_size=5)
    assert p.encoder._hf is not None and p.encoder._fast is None
    np.testing.assert_allclose(p.predict(TEXTS).probs, baseline.probs, atol=1e-6)


def test_transformers_tokenizer_object_is_accepted(tiny_onnx_dir, baseline):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_onnx_dir))
    p = ONNXRuntimePredictor(tiny_onnx_dir, tokenizer=tok)
    np.testing.assert_allclose(p.predict(TEXTS).probs, baseline.probs, atol=1e-6)
    assert tok.backend_tokenizer.truncation is None  # the caller's tokenizer is not reconfigured


def test_truncation_warns_once_and_cuts_at_max_length(tiny_onnx_dir):
    p = ONNXRuntimePredictor(tiny_onnx_dir, max_length=8)
    with pytest.warns(UserWarning, match="truncated"):
        batch = p.encoder.encode(["good film " * 10, "good"])
    assert batch.n_truncated == 1
    assert batch.arrays["attention_mask"].sum(axis=1).tolist() == [8, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p.encoder.encode(["good film " * 10])  # second time: no warning


def test_encoder_pads_with_pad_id_and_masks_padding(tiny_onnx_dir):
    enc = TextEncoder(tiny_onnx_dir, max_length=16)
    b = enc.encode(["good", "the movie was great"])
    ids, mask = b.arrays["input_ids"], b.arrays["attention_mask"]
    assert ids.shape == (2, 6)  # [CLS] the movie was great [SEP]
    assert ids[0, 3:].tolist() == [0, 0, 0] and mask[0].tolist() == [1, 1, 1, 0, 0, 0]
    padded = b.pad_rows(4)
    assert len(padded) == 4 and (padded.arrays["input_ids"][3] == ids[1]).all()


def test_bad_inputs_are_named(tiny_onnx_dir):
    p = ONNXRuntimePredictor(tiny_onnx_dir, batch_size=2)
    with pytest.raises(TypeError, match="input 4 is None"):
        p.predict(["a", "b", "c", "d", None])
    with pytest.raises(TypeError, match=r"input 0 is a bytes"):
        p.predict([b"bytes"])
    assert p.predict([]).probs.shape == (0, 2)


def test_missing_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        ONNXRuntimePredictor(tmp_path / "absent")
    (tmp_path / "other.onnx").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="other.onnx"):
        ONNXRuntimePredictor(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="not an .onnx file"):
        ONNXRuntimePredictor(tmp_path / "weights.bin")


def test_invalid_settings(tiny_onnx_dir):
    with pytest.raises(ValueError, match="batch_size"):
        ONNXRuntimePredictor(tiny_onnx_dir, batch_size=0)
    with pytest.raises(ValueError, match="num_threads"):
        ONNXRuntimePredictor(tiny_onnx_dir, num_threads=0)
    with pytest.raises(ValueError, match="shorter than max_length"):
        ONNXRuntimePredictor(tiny_onnx_dir, sequence_length=16, max_length=32)
