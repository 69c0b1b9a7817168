"""Doctests of a module whose optional extra is not installed in this venv are skipped, not failed.

The numpy-2 test venv (tools/run.sh) holds the core, the quantize and export extras and MLServer,
not every extra: a docstring example that builds a backend's object needs that backend.
"""

from __future__ import annotations

import importlib.util

import pytest

#: module whose doctests need an extra -> (the package it imports, the extra that installs it)
NEEDS = {"confroute.predictors.openai": ("httpx", "llm")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for module, (package, extra) in NEEDS.items():
            if item.name.startswith(module) and importlib.util.find_spec(package) is None:
                item.add_marker(pytest.mark.skip(reason=f"{module} needs {package}: pip install 'confroute[{extra}]'"))
