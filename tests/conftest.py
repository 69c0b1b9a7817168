import importlib.util
import sys
from pathlib import Path

import pytest

# Let tests import tests/_helpers.py as a plain module.
sys.path.insert(0, str(Path(__file__).parent))

#: Source modules whose doctests build a backend's object -> (the package it needs, its extra).
#: The numpy-2 test venv (tools/run.sh) holds the core, the quantize and export extras and MLServer,
#: not every extra: there those doctests are skipped with the extra named, not failed.
DOCTESTS_NEED = {"confroute.predictors.openai": ("httpx", "llm"), "confroute.predictors._http": ("httpx", "llm")}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for module, (package, extra) in DOCTESTS_NEED.items():
            if item.name.startswith(module) and importlib.util.find_spec(package) is None:
                item.add_marker(pytest.mark.skip(reason=f"{module} needs {package}: pip install 'confroute[{extra}]'"))
