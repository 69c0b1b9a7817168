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
    # The displays rendered: router, evaluation, choice, routing result, the estimator with its routing.
    for title in ("ThresholdRouter:", "Evaluation:", "ThresholdChoice", "RoutingResult", "fitted routing"):
        assert title in html, f"no HTML display of {title} in the executed notebook"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot was drawn"


@pytest.mark.slow
def test_notebook_screenshot_script(tmp_path):
    """tools/notebook_screenshot.sh executes the notebook, renders it to HTML and screenshots it
    with headless Chromium: the check of the displays as a user sees them (docs/img/notebook.png)."""
    import shutil
    import subprocess
    import sys

    if not any(shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    pytest.importorskip("nbconvert")
    pytest.importorskip("PIL")
    script = NOTEBOOK.parents[1] / "tools" / "notebook_screenshot.sh"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    out = subprocess.run(["bash", str(script), str(tmp_path / "img")], capture_output=True, text=True,
                         env=env, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    from PIL import Image

    png = Image.open(tmp_path / "img" / "notebook.png")
    assert png.width == 1000 and png.height > 2000
    html = next(tmp_path.glob("notebook_screenshot.*/notebook.html")).read_text(encoding="utf-8")
    for title in ("ThresholdRouter:", "Evaluation:", "fitted routing", "cost / input"):
        assert title in html
    # The blemishes of issue 26 are gone from what the browser shows.
    assert "(&#x27;max_prob&#x27;,)" not in html and "res.to_pandas()" not in html
