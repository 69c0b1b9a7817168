"""int8 export: a real dynamic quantisation of the tiny BERT, checked against float32.

ONNX Runtime's quantisation tools need onnx>=1.16 and ml_dtypes (numpy 2), so these tests skip
in the pinned DeepSparse environment and run in the quantize environment of ``tools/run.sh test``.
"""

from __future__ import annotations

import numpy as np
import pytest
from _tiny_bert import TEXTS

import confroute.export as export_module
from confroute.export.quantize import import_quantization


def _usable() -> bool:
    try:
        import_quantization()
    except ImportError:
        return False
    return True


needs_quantize = pytest.mark.skipif(not _usable(), reason="onnxruntime quantisation tools not usable here")


def test_missing_tools_are_named_with_the_extra(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda n: "1.14.1" if n == "onnx" else real(n))
    with pytest.raises(ImportError, match=r"confroute\[quantize\].*found onnx 1\.14\.1"):
        import_quantization()
    with pytest.raises(ImportError, match=r"confroute\[quantize\]"):
        export_module.quantize_onnx("unused", "unused")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="int8"):
        export_module.export_to_onnx("unused", "unused", quantize="int4")


@pytest.fixture(scope="module")
def int8_export(tiny_model_dir, tmp_path_factory):
    if not _usable():
        pytest.skip("onnxruntime quantisation tools not usable here")
    out = tmp_path_factory.mktemp("tiny-int8") / "int8"
    return export_module.export_to_onnx(tiny_model_dir, out, quantize="int8", check_texts=TEXTS)


pytestmark = pytest.mark.quantize


@needs_quantize
def test_int8_export_is_quantised_and_agrees_with_float32(int8_export, tiny_onnx_dir):
    import onnx

    from confroute.predictors import ONNXRuntimePredictor

    r = int8_export
    q = r.quantization
    assert q is not None and q.mode == "int8" and q.n_checked == len(TEXTS)
    assert r.max_abs_diff < 1e-4  # the float32 graph was checked against PyTorch first
    ops = {n.op_type for n in onnx.load(str(r.onnx_path)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    assert q.int8_bytes < q.fp32_bytes
    assert (r.output_dir / "tokenizer.json").is_file() and (r.output_dir / "config.json").is_file()
    # The reported agreement is what the predictors see, one text at a time.
    fp32 = ONNXRuntimePredictor(tiny_onnx_dir, batch_size=1, num_threads=1).predict(TEXTS)
    int8 = ONNXRuntimePredictor(r.output_dir, batch_size=1, num_threads=1).predict(TEXTS)
    diff = float(np.abs(fp32.probs - int8.probs).max())
    assert diff <= q.max_prob_diff + 1e-6
    assert q.label_agreement == pytest.approx(float(np.mean(fp32.labels == int8.labels)))
    # A real quantisation: close to float32, but not bit-identical.
    assert 0.0 < q.max_prob_diff < 0.05
    assert q.label_agreement >= 12 / 13


@needs_quantize
def test_int8_models_batch_in_input_order_unless_told(int8_export, tiny_onnx_dir):
    from confroute.predictors import ONNXRuntimePredictor
    from confroute.predictors.onnxruntime import is_dynamically_quantized

    assert is_dynamically_quantized(int8_export.onnx_path)
    assert not is_dynamically_quantized(tiny_onnx_dir / "model.onnx")
    # Per-batch activation scales: batch composition changes outputs, so no silent re-batching.
    p = ONNXRuntimePredictor(int8_export.output_dir, num_threads=1)
    assert p.dynamic_quantized and not p.sort_by_length
    assert ONNXRuntimePredictor(int8_export.output_dir, sort_by_length=True).sort_by_length
    assert ONNXRuntimePredictor(tiny_onnx_dir).sort_by_length


@needs_quantize
def test_quantize_onnx_on_an_existing_export(tiny_onnx_dir, tmp_path):
    before = (tiny_onnx_dir / "model.onnx").read_bytes()
    r = export_module.quantize_onnx(tiny_onnx_dir, tmp_path / "q")
    assert (tiny_onnx_dir / "model.onnx").read_bytes() == before
    assert r.n_checked == len(export_module.DEFAULT_CHECK_TEXTS)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_module.quantize_onnx(tiny_onnx_dir, tmp_path / "q")
    with pytest.raises(ValueError, match="must differ"):
        export_module.quantize_onnx(tiny_onnx_dir, tiny_onnx_dir)


@needs_quantize
def test_command_line_reports_the_agreement(tiny_model_dir, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:6]) + "\n", encoding="utf-8")
    argv = [str(tiny_model_dir), str(tmp_path / "cli"), "--quantize", "int8", "--check-texts", str(texts)]
    from confroute.cli import main  # the `confroute export` subcommand

    assert main(["export", *argv]) == 0
    out = capsys.readouterr().out
    assert "int8:" in out and "label agreement" in out and "on 6 texts" in out
