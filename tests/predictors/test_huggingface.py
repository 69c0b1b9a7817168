"""HFPipelinePredictor: logits in id2label column order, threads, inputs, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _tiny_bert import TEXTS, build_tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from confroute.predictors import HFPipelinePredictor  # noqa: E402


def _direct_logits(model_dir, texts):
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return np.stack([model(**tok([t], return_tensors="pt")).logits[0].numpy() for t in texts])


@pytest.fixture(scope="module")
def three_class_dir(tmp_path_factory):
    """A 3-class model whose id2label is not in alphabetical or score order."""
    # Trained on the two-label toy set, so the ranking of columns 0 and 1 changes between texts.
    d = build_tiny_model(tmp_path_factory.mktemp("three") / "m", num_labels=3, train_steps=120)
    config = json.loads((d / "config.json").read_text())
    config["id2label"] = {"0": "zeta", "1": "alpha", "2": "mid"}
    config["label2id"] = {"zeta": 0, "alpha": 1, "mid": 2}
    (d / "config.json").write_text(json.dumps(config))
    return d


def test_logits_are_the_model_outputs_in_id2label_order(three_class_dir):
    p = HFPipelinePredictor(three_class_dir, batch_size=3, num_threads=1)
    assert p.classes == ("zeta", "alpha", "mid")
    out = p.predict(TEXTS)
    expected = _direct_logits(three_class_dir, TEXTS)
    np.testing.assert_allclose(out.logits, expected, atol=1e-5, rtol=0)
    # The pipeline returns scores sorted by value; the comparison above fails unless that sort
    # is undone, because the sorted order differs from the column order on some texts.
    assert len({tuple(np.argsort(-row)) for row in expected}) > 1
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-9)
    assert out.labels.tolist() == [("zeta", "alpha", "mid")[i] for i in expected.argmax(1)]


def test_existing_pipeline_is_used_as_is(tiny_model_dir):
    pipe = transformers.pipeline("text-classification", model=str(tiny_model_dir), device=-1)
    wrapped = HFPipelinePredictor(pipe, batch_size=5)
    assert wrapped.pipeline is pipe
    fresh = HFPipelinePredictor(tiny_model_dir, batch_size=5)
    np.testing.assert_allclose(wrapped.predict(TEXTS).probs, fresh.predict(TEXTS).probs, atol=1e-6)


def test_classes_override_renames_columns(tiny_model_dir):
    p = HFPipelinePredictor(tiny_model_dir, classes=["neg", "pos"])
    assert p.predict(TEXTS[:2]).classes == ("neg", "pos")
    with pytest.raises(ValueError, match="has 2 outputs"):
        HFPipelinePredictor(tiny_model_dir, classes=["a", "b", "c"])


def test_num_threads_applies_during_predict_and_is_restored(tiny_model_dir):
    torch.set_num_threads(2)
    seen = []
    p = HFPipelinePredictor(tiny_model_dir, num_threads=1, batch_size=4)
    real_pipeline = p.pipeline

    class Recorder:
        def __call__(self, *args, **kwargs):
            seen.append(torch.get_num_threads())
            return real_pipeline(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(real_pipeline, name)

    p.pipeline = Recorder()
    p.predict(TEXTS)
    assert seen == [1, 1, 1, 1]  # 13 texts in batches of 4
    assert torch.get_num_threads() == 2


def test_none_input_is_named_by_global_position(tiny_model_dir):
    p = HFPipelinePredictor(tiny_model_dir, batch_size=4)
    texts = list(TEXTS)
    texts[9] = None
    with pytest.raises(TypeError, match="input 9 is None"):
        p.predict(texts)
    with pytest.raises(TypeError, match="input 1 is a int"):
        p.predict(["fine", 3])
    with pytest.raises(TypeError, match="single string"):
        p.predict("just one text")


def test_empty_batch_and_numpy_strings(tiny_model_dir):
    p = HFPipelinePredictor(tiny_model_dir)
    empty = p.predict([])
    assert empty.probs.shape == (0, 2)
    out = p.predict(np.array(TEXTS[:3]))
    np.testing.assert_allclose(out.probs, p.predict(TEXTS[:3]).probs)


def test_missing_directory_and_file_paths_fail_clearly(tmp_path):
    f = tmp_path / "model.bin"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        HFPipelinePredictor(f)
    with pytest.raises(TypeError, match="model must be"):
        HFPipelinePredictor(42)


@pytest.mark.parametrize("name", ["models/not-here", "not-here", "org/name"])
def test_a_name_that_does_not_exist_is_no_such_directory_not_a_download(name, monkeypatch):
    # Without the hub: prefix a name is a path: no network, no retries, one clear error.
    import socket
    import time

    def refuse(*args, **kwargs):
        raise AssertionError("tried the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=f"no such model directory: {name}.*hub:{name}"):
        HFPipelinePredictor(name)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ValueError, match="name the Hub model"):
        HFPipelinePredictor("hub:")


def test_multi_label_models_are_refused(tmp_path, tiny_model_dir):
    import shutil

    d = tmp_path / "ml"
    shutil.copytree(tiny_model_dir, d)
    config = json.loads((d / "config.json").read_text())
    config["problem_type"] = "multi_label_classification"
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="multi-label"):
        HFPipelinePredictor(d)


def test_max_length_defaults_to_model_limit(tiny_model_dir):
    p = HFPipelinePredictor(tiny_model_dir)
    assert p.max_length == 64
    long_text = "good " * 200
    out = p.predict([long_text])  # would crash position embeddings without truncation
    assert out.probs.shape == (1, 2)
