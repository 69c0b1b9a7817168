"""Static (calibrated) int8 export: a real ``quantize_static`` of the tiny BERT, checked for batch
invariance against the dynamic int8 model, which is not.

The tiny model is built by the test (no download). Like tests/predictors/test_quantize.py these
need ONNX Runtime's quantisation tools (numpy 2): they skip in the DeepSparse environment.
"""

from __future__ import annotations

import numpy as np
import pytest
from _tiny_bert import TEXTS, _toy_data

import confroute.export as export_module
from confroute.exceptions import CLIError
from confroute.export.quantize import import_quantization


def _usable() -> bool:
    try:
        import_quantization()
    except ImportError:
        return False
    return True


needs_quantize = pytest.mark.skipif(not _usable(), reason="onnxruntime quantisation tools not usable here")

#: Calibration texts: the tiny model's training distribution, not the check texts.
CALIBRATION = _toy_data(64, seed=11)[0]


def test_static_needs_calibration_texts():
    with pytest.raises(ValueError, match="calibration_texts"):
        export_module.quantize_onnx("unused", "unused", mode="static")
    with pytest.raises(ValueError, match="calibration_texts"):
        export_module.quantize_onnx("unused", "unused", mode="static", calibration_texts=[])
    with pytest.raises(ValueError, match="calibration_texts"):
        export_module.export_to_onnx("unused", "unused", quantize="static")


def test_calibration_arguments_are_checked():
    with pytest.raises(ValueError, match="mode='static' only"):
        export_module.quantize_onnx("unused", "unused", calibration_texts=["a"])
    with pytest.raises(ValueError, match="calibration_method"):
        export_module.quantize_onnx("unused", "unused", mode="static", calibration_texts=["a"],
                                    calibration_method="median")
    with pytest.raises(TypeError, match="input 1 is None"):
        export_module.quantize_onnx("unused", "unused", mode="static", calibration_texts=["a", None])


def test_calibration_file_is_read_and_sampled(tmp_path):
    from confroute.cli.export import calibration_texts

    lines = tmp_path / "calib.txt"
    lines.write_text("".join(f"text {i}\n" for i in range(100)) + "\n", encoding="utf-8")
    got = calibration_texts(lines, 10)
    assert len(got) == 10 and len(set(got)) == 10 and set(got) <= {f"text {i}" for i in range(100)}
    assert got == calibration_texts(lines, 10)  # seeded
    assert calibration_texts(lines, 500) == [f"text {i}" for i in range(100)]
    table = tmp_path / "calib.tsv"
    table.write_text("sentence\tlabel\na good film\t1\na bad film\t0\n", encoding="utf-8")
    assert calibration_texts(table, 512) == ["a good film", "a bad film"]
    with pytest.raises(CLIError, match="no file"):
        calibration_texts(tmp_path / "missing.txt", 5)


def test_command_line_refuses_static_without_calibration(tmp_path, capsys):
    from confroute.cli import main

    assert main(["export", str(tmp_path / "m"), str(tmp_path / "o"), "--quantize", "static"]) != 0
    assert "--calibration FILE" in capsys.readouterr().err


pytestmark = pytest.mark.quantize


@pytest.fixture(scope="module")
def static_dir(tiny_onnx_dir, tmp_path_factory):
    if not _usable():
        pytest.skip("onnxruntime quantisation tools not usable here")
    out = tmp_path_factory.mktemp("tiny-static") / "static"
    r = export_module.quantize_onnx(tiny_onnx_dir, out, mode="static", calibration_texts=CALIBRATION,
                                    check_texts=TEXTS)
    return r


@pytest.fixture(scope="module")
def dynamic_dir(tiny_onnx_dir, tmp_path_factory):
    if not _usable():
        pytest.skip("onnxruntime quantisation tools not usable here")
    return export_module.quantize_onnx(tiny_onnx_dir, tmp_path_factory.mktemp("tiny-dyn") / "dyn", check_texts=TEXTS)


def _compositions(model_dir, texts, n=5):
    """Largest probability change of a text over ``n`` random batch compositions (sizes 1-5)."""
    from confroute.predictors import ONNXRuntimePredictor

    p = ONNXRuntimePredictor(model_dir, num_threads=1, sort_by_length=False)
    return export_module.batch_composition_diff(p, texts, compositions=n, max_batch_size=5)


@needs_quantize
def test_static_int8_is_quantised_and_close_to_float32(static_dir, tiny_onnx_dir):
    import onnx

    r = static_dir
    assert r.mode == "static" and r.n_calibration == len(CALIBRATION) and r.n_checked == len(TEXTS)
    ops = [n.op_type for n in onnx.load(str(r.onnx_path)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "DynamicQuantizeLinear" not in ops
    assert r.int8_bytes < r.fp32_bytes
    assert 0.0 < r.max_prob_diff < 0.05  # a real quantisation, close to float32
    assert r.label_agreement >= 12 / 13
    assert (r.output_dir / "tokenizer.json").is_file() and (r.output_dir / "config.json").is_file()


@needs_quantize
def test_static_int8_is_batch_invariant_and_dynamic_is_not(static_dir, dynamic_dir):
    from confroute.predictors import ONNXRuntimePredictor

    texts = (TEXTS + _toy_data(40, seed=3)[0])
    assert _compositions(static_dir.output_dir, texts) <= 1e-5
    assert static_dir.max_batch_diff <= 1e-5
    # The property is not trivial: the dynamic model's rows move with their batch.
    assert _compositions(dynamic_dir.output_dir, texts) > 1e-4
    assert dynamic_dir.max_batch_diff > 1e-4
    # Static graphs are not dynamically quantised: the predictor sorts them by length.
    p = ONNXRuntimePredictor(static_dir.output_dir, num_threads=1)
    assert not p.dynamic_quantized and p.sort_by_length


@needs_quantize
def test_command_line_static_export(tiny_model_dir, tmp_path, capsys):
    from confroute.cli import main

    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(CALIBRATION) + "\n", encoding="utf-8")
    out = tmp_path / "cli-static"
    argv = ["export", str(tiny_model_dir), str(out), "--quantize", "static", "--calibration", str(calib),
            "--calibration-size", "32"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "static:" in text and "calibrated on 32 texts" in text and "batch of 32" in text
    assert (out / "model.onnx").is_file()
