"""DeepSparsePredictor: the DeepSparse traps (file rewrite, static shapes, analytics, versions)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _tiny_bert import CLASSES, TEXTS

from confroute.predictors import deepsparse as ds_module
from confroute.predictors.deepsparse import import_deepsparse


def _usable() -> bool:
    try:
        import_deepsparse()
    except ImportError:
        return False
    return True


needs_deepsparse = pytest.mark.skipif(not _usable(), reason="deepsparse 1.8.0 not usable here")


def _digest(d: Path) -> dict[str, tuple[str, float]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(d.iterdir())
        if p.is_file()
    }


def _temp_copies() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("confroute-deepsparse-*")}


# -- environment checks: these run everywhere, deepsparse installed or not ----------------------


def test_refuses_python_312_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 12, 1, "final", 0))
    with pytest.raises(ImportError, match=r"Python < 3\.12.*ONNXRuntimePredictor"):
        import_deepsparse()


def test_refuses_numpy_2_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(ds_module.np, "__version__", "2.1.3")
    with pytest.raises(ImportError, match=r"numpy < 2 \(found numpy 2\.1\.3\)"):
        import_deepsparse()


def test_refuses_onnx_115_with_a_clear_message(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(ds_module.np, "__version__", "1.26.4")  # so that the onnx check is the one that fires
    monkeypatch.setattr(importlib.metadata, "version", lambda n: "1.16.0" if n == "onnx" else real(n))
    with pytest.raises(ImportError, match=r"onnx < 1\.15 \(found onnx 1\.16\.0\)"):
        import_deepsparse()


def test_version_parsing():
    assert ds_module.version_tuple("1.26.4") == (1, 26, 4)
    assert ds_module.version_tuple("2.0.0rc1") == (2, 0, 0)
    assert ds_module.version_tuple("1.14.1+cpu") == (1, 14, 1)


@needs_deepsparse
def test_analytics_disabled_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("NM_DISABLE_ANALYTICS", raising=False)
    import_deepsparse()
    assert os.environ["NM_DISABLE_ANALYTICS"] == "1"
    monkeypatch.setenv("NM_DISABLE_ANALYTICS", "0")
    import_deepsparse()
    assert os.environ["NM_DISABLE_ANALYTICS"] == "0"


# -- the engine ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ort_reference(tiny_onnx_dir):
    pytest.importorskip("onnxruntime")
    from confroute.predictors import ONNXRuntimePredictor

    return ONNXRuntimePredictor(tiny_onnx_dir, num_threads=1).predict(TEXTS)


@needs_deepsparse
def test_users_files_are_never_written_and_the_copy_is_removed(tiny_onnx_dir, ort_reference):
    from confroute.predictors import DeepSparsePredictor

    before, temps = _digest(tiny_onnx_dir), _temp_copies()
    p = DeepSparsePredictor(tiny_onnx_dir, batch_size=4, num_cores=1, sequence_length=32)
    out = p.predict(TEXTS)
    assert _digest(tiny_onnx_dir) == before
    assert _temp_copies() == temps
    np.testing.assert_allclose(out.probs, ort_reference.probs, atol=1e-4, rtol=0)


@needs_deepsparse
@pytest.mark.parametrize("n", [1, 3, 4, 7])
def test_short_last_batch_is_padded_and_cut(tiny_onnx_dir, ort_reference, n):
    from confroute.predictors import DeepSparsePredictor

    p = DeepSparsePredictor(tiny_onnx_dir, batch_size=4, num_cores=1, sequence_length=32)
    out = p.predict(TEXTS[:n])
    assert len(out) == n and out.classes == CLASSES
    np.testing.assert_allclose(out.logits, ort_reference.logits[:n], atol=1e-4, rtol=0)


@needs_deepsparse
def test_static_shapes_and_batch_limit(tiny_onnx_dir):
    from confroute.predictors import DeepSparsePredictor

    p = DeepSparsePredictor(tiny_onnx_dir, batch_size=2, num_cores=1, sequence_length=16, buckets=None)
    assert p.encoder.encode(["good"]).arrays["input_ids"].shape == (1, 16)
    with pytest.raises(ValueError, match="compiled for 2"):
        p.predict_logits(TEXTS[:3])
    assert "sequence_length=16" in repr(p)


@needs_deepsparse
def test_existing_pipeline_reuses_its_engine(tiny_onnx_dir, tmp_path, ort_reference):
    import deepsparse

    from confroute.predictors import DeepSparsePredictor

    # The Pipeline rewrites model.onnx in place: give it a copy.
    d = tmp_path / "pipeline-copy"
    shutil.copytree(tiny_onnx_dir, d)
    pipe = deepsparse.Pipeline.create(
        task="text-classification", model_path=str(d), batch_size=2, sequence_length=32, num_cores=1
    )
    with pytest.raises(ValueError, match="batch_size=2"):
        DeepSparsePredictor(pipe, batch_size=8)
    p = DeepSparsePredictor(pipe)
    assert p.batch_size == 2 and p.sequence_length == 32 and p.classes == CLASSES
    out = p.predict(TEXTS)
    np.testing.assert_allclose(out.probs, ort_reference.probs, atol=1e-4, rtol=0)
    assert out.logits is not None  # the Pipeline itself only gives softmax scores


@needs_deepsparse
def test_bad_arguments(tiny_onnx_dir, tmp_path):
    from confroute.predictors import DeepSparsePredictor

    with pytest.raises(ValueError, match="batch_size"):
        DeepSparsePredictor(tiny_onnx_dir, batch_size=0)
    with pytest.raises(ValueError, match="num_cores"):
        DeepSparsePredictor(tiny_onnx_dir, num_cores=0)
    with pytest.raises(FileNotFoundError, match="no such model"):
        DeepSparsePredictor(tmp_path / "absent")
    with pytest.raises(TypeError, match="model must be"):
        DeepSparsePredictor(3.5)


# -- length buckets ------------------------------------------------------------------------------


def test_bucket_lengths_are_capped_and_sorted():
    assert ds_module._buckets((64, 16, 128, 32), 64) == (16, 32, 64)
    assert ds_module._buckets((16, 32), 48) == (16, 32, 48)
    assert ds_module._buckets(None, 128) == (128,)
    with pytest.raises(ValueError, match=">= 2 tokens"):
        ds_module._buckets((1, 16), 64)


@needs_deepsparse
def test_buckets_compile_on_first_use_and_match_static_shapes(tiny_onnx_dir, ort_reference):
    from confroute.predictors import DeepSparsePredictor

    p = DeepSparsePredictor(tiny_onnx_dir, batch_size=4, num_cores=1, sequence_length=32, buckets=(8, 16))
    assert p.buckets == (8, 16, 32) and p._engines == {}
    assert [p.bucket_for(n) for n in (3, 8, 9, 17, 40)] == [8, 8, 16, 32, 32]
    out = p.predict(TEXTS)
    lengths = p.encoder.tokenize(TEXTS).lengths
    # Sorted by length, each batch of 4 goes to the smallest bucket that holds its longest text.
    order = np.argsort(lengths, kind="stable")
    used = {p.bucket_for(int(lengths[order[i:i + 4]].max())) for i in range(0, len(TEXTS), 4)}
    assert set(p._engines) == used and len(used) >= 2
    np.testing.assert_allclose(out.logits, ort_reference.logits, atol=1e-4, rtol=0)
    static = DeepSparsePredictor(tiny_onnx_dir, batch_size=4, num_cores=1, sequence_length=32, buckets=None,
                                 sort_by_length=False)
    assert set(static._engines) == {32}  # compiled at construction, as before
    np.testing.assert_allclose(static.predict(TEXTS).logits, out.logits, atol=1e-4, rtol=0)
    assert "buckets=(8, 16, 32)" in repr(p)


def test_keep_faster_buckets_drops_lengths_no_faster_than_a_longer_one():
    # The shape measured on DeepSparse 1.8 (ms per batch of 32): 16-32 tokens slower than 40.
    times = {8: 0.047, 12: 0.074, 16: 0.227, 24: 0.224, 32: 0.400, 40: 0.229, 48: 0.270, 64: 0.309}
    assert ds_module.keep_faster_buckets(times) == (8, 12, 40, 48, 64)
    # Brute force: a kept length beats every longer kept one by min_gain; a dropped one does not
    # beat the fastest longer kept one; the longest is always kept.
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = sorted(rng.choice(np.arange(2, 200), size=rng.integers(1, 8), replace=False).tolist())
        t = {n: float(rng.uniform(0.01, 1.0)) for n in lengths}
        kept = ds_module.keep_faster_buckets(t, 0.1)
        assert kept[-1] == lengths[-1] and set(kept) <= set(lengths)
        for n in lengths[:-1]:
            longer = [t[m] for m in kept if m > n]
            assert (n in kept) == (t[n] < 0.9 * min(longer))
    assert ds_module.keep_faster_buckets({10: 0.2, 20: 0.2}, min_gain=0.0) == (20,)  # ties go long
    with pytest.raises(ValueError, match="no lengths"):
        ds_module.keep_faster_buckets({})


@needs_deepsparse
def test_time_and_tune_buckets_on_a_real_engine(tiny_onnx_dir, ort_reference):
    from confroute.predictors import DeepSparsePredictor

    p = DeepSparsePredictor(tiny_onnx_dir, batch_size=4, num_cores=1, sequence_length=32, buckets=(8, 16))
    times = p.time_buckets([8, 32], repeats=2)
    assert list(times) == [8, 32] and all(t > 0 for t in times.values())
    assert set(p._engines) == {8, 32}  # bucket engines are kept for prediction
    with pytest.raises(ValueError, match="outside 2..sequence_length=32"):
        p.time_buckets([64])
    with pytest.raises(ValueError, match="repeats"):
        p.time_buckets([8], repeats=0)
    timed = p.tune_buckets(candidates=(8, 12, 16), repeats=2)
    assert list(timed) == [8, 12, 16, 32]
    assert p.buckets == ds_module.keep_faster_buckets(timed) and p.buckets[-1] == 32
    assert set(p._engines) <= set(p.buckets)  # engines of dropped candidates are released
    np.testing.assert_allclose(p.predict(TEXTS).logits, ort_reference.logits, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="min_gain"):
        p.tune_buckets(min_gain=1.0)
