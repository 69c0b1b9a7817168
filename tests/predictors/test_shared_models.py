"""The real MiniLM pair in ../shared: each backend reproduces the recorded dev accuracy.

Dense model: HF pipeline and ONNX Runtime on a fresh export (written to a pytest temp dir, never
into the repository or ../shared). Pruned model: ONNX Runtime and DeepSparse, which must agree.
Two threads per backend; about a minute in total.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _tiny_bert import shared_dir

pytestmark = pytest.mark.shared

SHARED = shared_dir()
DENSE = SHARED / "models" / "minilm-sst2-dense"
PRUNED = SHARED / "models" / "minilm-sst2-pruned80"
DEV = SHARED / "data" / "sst2" / "dev.tsv"
THREADS = 2
TOLERANCE = 0.002  # 0.2 accuracy points


@pytest.fixture(scope="module")
def dev():
    for path in (DENSE, PRUNED, DEV):
        if not path.exists():
            pytest.skip(f"shared assets not found: {path} (set CONFROUTE_SHARED to their folder)")
    from confroute.integrations.io import load_texts

    return load_texts(DEV)


def _recorded(model_dir):
    return json.loads((model_dir / "training_info.json").read_text())["dev_accuracy"]


@pytest.fixture(scope="module")
def dense_onnx(dev, tmp_path_factory):
    pytest.importorskip("torch")
    from confroute.export import export_to_onnx

    result = export_to_onnx(DENSE, tmp_path_factory.mktemp("minilm-dense-onnx"))
    assert result.max_abs_diff < 1e-4
    return result.output_dir


@pytest.fixture(scope="module")
def ort_pruned(dev):
    pytest.importorskip("onnxruntime")
    from confroute.predictors import ONNXRuntimePredictor

    return ONNXRuntimePredictor(PRUNED, batch_size=32, num_threads=THREADS).predict(dev.texts)


def test_hf_pipeline_on_dense(dev):
    pytest.importorskip("transformers")
    from confroute.predictors import HFPipelinePredictor

    out = HFPipelinePredictor(DENSE, batch_size=32, num_threads=THREADS).predict(dev.texts)
    assert abs(np.mean(out.label_index == dev.labels) - _recorded(DENSE)) <= TOLERANCE
    assert out.classes == ("NEGATIVE", "POSITIVE")


def test_onnxruntime_on_dense_export(dev, dense_onnx):
    from confroute.predictors import ONNXRuntimePredictor

    out = ONNXRuntimePredictor(dense_onnx, batch_size=32, num_threads=THREADS).predict(dev.texts)
    assert abs(np.mean(out.label_index == dev.labels) - _recorded(DENSE)) <= TOLERANCE


def test_onnxruntime_on_pruned(dev, ort_pruned):
    assert abs(np.mean(ort_pruned.label_index == dev.labels) - _recorded(PRUNED)) <= TOLERANCE


def test_deepsparse_on_pruned_matches_recorded_accuracy_and_onnxruntime(dev, ort_pruned, record_property):
    from confroute.predictors.deepsparse import import_deepsparse

    try:
        import_deepsparse()
    except ImportError as exc:
        pytest.skip(str(exc))
    from confroute.predictors import DeepSparsePredictor

    files = {p.name: p.stat().st_mtime for p in PRUNED.iterdir()}
    # SST-2 dev sentences are at most 55 tokens, so 64 static tokens truncate nothing.
    ds = DeepSparsePredictor(PRUNED, batch_size=32, num_cores=THREADS, sequence_length=64)
    out = ds.predict(dev.texts)
    assert {p.name: p.stat().st_mtime for p in PRUNED.iterdir()} == files
    assert abs(np.mean(out.label_index == dev.labels) - _recorded(PRUNED)) <= TOLERANCE
    max_diff = float(np.abs(out.probs - ort_pruned.probs).max())
    agreement = float(np.mean(out.labels == ort_pruned.labels))
    record_property("deepsparse_vs_onnxruntime_max_prob_diff", max_diff)
    record_property("deepsparse_vs_onnxruntime_label_agreement", agreement)
    assert max_diff < 1e-4
    assert agreement == 1.0
