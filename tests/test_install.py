"""Installing confroute as a user would: the README's example runs, its links work on an index page,
and the built wheel installs in a fresh venv on every Python the core supports.

The wheel test is slow (a fresh venv and numpy, scipy, scikit-learn, pandas per Python version, ~1 min
each on 2 cores), so it runs only when ``CONFROUTE_CHECK_WHEEL`` names a built wheel, as
``bash tools/run.sh test`` does; each version skips when no interpreter is found
(tools/check_wheel.sh looks in ~/.pyenv/versions, then on PATH).
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART = ROOT / "examples" / "quickstart.py"
#: The repository URL the README's links and pyproject's Documentation URL start with (a placeholder
#: until the project has its public home).
REPO_URL = "https://github.com/confroute/confroute"


def readme_snippet() -> str:
    """README.md's first ```python block."""
    match = re.search(r"```python\n(.*?)```", README, re.S)
    assert match, "README.md has no python snippet"
    return match.group(1).strip()


def test_readme_snippet_is_the_runnable_quickstart():
    text = QUICKSTART.read_text(encoding="utf-8")
    body = text.split("# --- README snippet begins\n", 1)[1].split("# --- README snippet ends", 1)[0]
    assert body.strip() == readme_snippet(), (
        "README.md's first snippet and examples/quickstart.py (between its '# --- README' lines) differ: "
        "change both")
    assert "examples/quickstart.py" in README


def test_quickstart_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pandas")  # the snippet's result.to_pandas(): the pandas extra
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(QUICKSTART), run_name="__main__")
    assert "quickstart OK" in capsys.readouterr().out


def test_readme_links_work_on_an_index_page():
    """An index (PyPI) renders README.md without the repository: every link must be absolute."""
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    assert links
    relative = [link for link in links if not re.match(r"(https?://|mailto:|#)", link)]
    assert not relative, f"relative links break on an index page: {relative}"
    for link in links:
        if link.startswith(REPO_URL):
            path = re.sub(rf"^{REPO_URL}/(blob|tree)/main/?", "", link).split("#")[0]
            assert (ROOT / path).exists(), f"{link}: no {path} in the repository"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'Documentation = "{REPO_URL}/tree/main/docs"' in pyproject


def test_readme_says_how_to_install_without_an_index():
    for text in ('pip install .', "python -m build", f"@ git+{REPO_URL}", 'pip install "dist/confroute-'):
        assert text in README, text


def test_ci_runs_the_readme_test_command():
    command = "bash tools/run.sh test"
    assert command in README
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith(("#", "set ", "cd "))] == [command]


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12", "3.13"])
def test_wheel_installs_and_runs_the_readme_example(version):
    wheel = os.environ.get("CONFROUTE_CHECK_WHEEL")
    if not wheel:
        pytest.skip("slow: set CONFROUTE_CHECK_WHEEL to a built wheel (bash tools/run.sh test does)")
    proc = subprocess.run(["bash", str(ROOT / "tools" / "check_wheel.sh"), version], capture_output=True,
                          text=True, env={**os.environ, "WHEEL": wheel}, timeout=900)
    if proc.returncode == 3:
        pytest.skip(f"no Python {version} interpreter found")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Python {version}" in proc.stdout and "quickstart OK" in proc.stdout, proc.stdout
