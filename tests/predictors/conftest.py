"""Session fixtures: the tiny BERT (built once per session) and its ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _tiny_bert import TEXTS, build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from confroute.export import export_to_onnx

    out = tmp_path_factory.mktemp("tiny-bert-onnx") / "onnx"
    export_to_onnx(tiny_model_dir, out)
    return out


@pytest.fixture()
def texts() -> list[str]:
    return list(TEXTS)


@pytest.fixture(scope="session")
def tiny_config(tiny_model_dir: Path) -> dict:
    return json.loads((tiny_model_dir / "config.json").read_text())
