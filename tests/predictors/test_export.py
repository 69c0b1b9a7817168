"""export_to_onnx: graph layout, side files, the PyTorch check, and safety of the source directory."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from _tiny_bert import TEXTS

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from confroute.cli import main  # noqa: E402
from confroute.export import ExportMismatchError, export_to_onnx  # noqa: E402


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_graph_has_named_inputs_dynamic_axes_and_opset_14(tiny_onnx_dir):
    model = onnx.load(str(tiny_onnx_dir / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in model.graph.output] == ["logits"]
    for value in model.graph.input:
        assert _dims(value) == ["batch", "sequence"]
    assert _dims(model.graph.output[0]) == ["batch", 2]
    assert {op.domain: op.version for op in model.opset_import}[""] == 14


def test_side_files_are_copied(tiny_model_dir, tiny_onnx_dir):
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        assert (tiny_onnx_dir / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    assert not list(tiny_onnx_dir.glob("*.safetensors"))


def test_exported_model_runs_any_batch_and_length(tiny_model_dir, tiny_onnx_dir):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir)).eval()
    session = ort.InferenceSession(str(tiny_onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (TEXTS[:1], TEXTS[:7], TEXTS):
        enc = tok(batch, padding=True, return_tensors="np")
        feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
        (got,) = session.run(["logits"], feed)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_result_reports_the_check(tiny_model_dir, tmp_path):
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tiny_model_dir.iterdir()}
    r = export_to_onnx(tiny_model_dir, tmp_path / "out", check_texts=TEXTS[:4])
    assert r.onnx_path == (tmp_path / "out" / "model.onnx").resolve()
    assert r.n_checked == 4 and r.opset == 14
    assert 0.0 <= r.max_abs_diff < 1e-4
    assert r.input_names == ("input_ids", "attention_mask", "token_type_ids")
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tiny_model_dir.iterdir()}
    assert after == before
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_to_onnx(tiny_model_dir, tmp_path / "out")
    assert export_to_onnx(tiny_model_dir, tmp_path / "out", overwrite=True).max_abs_diff < 1e-4


def test_a_wrong_export_is_caught(tiny_model_dir, tmp_path, monkeypatch):
    real_export = torch.onnx.export

    def export_with_shifted_bias(module, *args, **kwargs):
        # Simulate an exporter bug: the graph gets a classifier bias one unit off.
        bias = module.inner.classifier.bias
        with torch.no_grad():
            bias += 1.0
            try:
                return real_export(module, *args, **kwargs)
            finally:
                bias -= 1.0

    monkeypatch.setattr(torch.onnx, "export", export_with_shifted_bias)
    with pytest.raises(ExportMismatchError, match=r"differ from PyTorch by up to 1(\.0*)?\b"):
        export_to_onnx(tiny_model_dir, tmp_path / "bad")
    assert (tmp_path / "bad" / "model.onnx").exists()  # kept for inspection


def test_refuses_to_write_into_the_model_directory(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="must differ"):
        export_to_onnx(tiny_model_dir, tiny_model_dir)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        export_to_onnx(tmp_path, tmp_path / "x")


def test_command_line(tiny_model_dir, tmp_path, capsys):
    assert main(["export", str(tiny_model_dir), str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "model.onnx" in out and "max |logit diff|" in out


def test_old_module_is_a_warned_alias_of_confroute_export():
    import importlib
    import sys

    import confroute.export

    sys.modules.pop("confroute.predictors.export", None)
    with pytest.deprecated_call(match="use confroute.export"):
        old = importlib.import_module("confroute.predictors.export")
    assert old is confroute.export and old.export_to_onnx is export_to_onnx
