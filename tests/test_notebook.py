"""The example notebook runs from top to bottom in a fresh kernel, and is stored without outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "routing_notebook.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    for i, cell in enumerate(code):
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
            f"code cell {i} has outputs: clear them before committing "
            "(jupyter nbconvert --clear-output --inplace examples/routing_notebook.ipynb)"
        )


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    # The kernel runs in examples/ (as a user opening the notebook would), with this checkout's
    # sources first on its path.
    src = str(NOTEBOOK.parents[1] / "src")
    env_path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    os.environ["PYTHONPATH"], old = env_path, os.environ.get("PYTHONPATH")
    try:
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        client.execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    # The displays rendered: evaluation, choice, routing result, the estimator with its routing.
    for title in ("Evaluation:", "ThresholdChoice", "RoutingResult", "fitted routing"):
        assert title in html, f"no HTML display of {title} in the executed notebook"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot was drawn"
