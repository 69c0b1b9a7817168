"""Release metadata agrees with itself: one version, the Python versions the core is tested on."""

from __future__ import annotations

import sys
from pathlib import Path

import confroute

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import pytest

    tomllib = pytest.importorskip("tomli")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_version_is_the_same_in_the_package_and_pyproject():
    assert confroute.__version__ == _project()["version"]


def test_changelog_has_a_section_for_this_version():
    assert f"({confroute.__version__})" in (ROOT / "CHANGELOG.md").read_text() or \
        f"[{confroute.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_classifiers_name_every_supported_python():
    classifiers = _project()["classifiers"]
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert _project()["requires-python"] == ">=3.10"
