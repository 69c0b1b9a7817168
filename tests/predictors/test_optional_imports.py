"""The core imports without any backend library; each backend names its extra when one is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"torch", "transformers", "onnxruntime", "deepsparse", "tokenizers", "onnx",
               "datasets", "sparsezoo"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r} (blocked)")

    sys.meta_path.insert(0, Block())
    import confroute, confroute.integrations.io, confroute.export
    from confroute.predictors import DeepSparsePredictor, HFPipelinePredictor, ONNXRuntimePredictor
    from confroute.export import export_to_onnx
    from confroute.integrations.io import load_texts

    calls = {
        "hf": lambda: HFPipelinePredictor("some/model"),
        "onnx": lambda: ONNXRuntimePredictor("some/dir"),
        "deepsparse": lambda: DeepSparsePredictor("some/dir"),
        "export": lambda: export_to_onnx("some/dir", "out"),
        "datasets": lambda: load_texts("glue", split="validation"),
    }
    for extra, call in calls.items():
        try:
            call()
        except ImportError as exc:
            assert f"pip install 'confroute[{extra}]'" in str(exc), (extra, str(exc))
            print("ok", extra)
        else:
            raise AssertionError(f"{extra}: no ImportError")
    assert not BLOCKED & set(sys.modules), BLOCKED & set(sys.modules)
    """
)


def test_core_imports_without_backends_and_errors_name_the_extra():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok", "hf", "ok", "onnx", "ok", "deepsparse", "ok", "export", "ok", "datasets"]
