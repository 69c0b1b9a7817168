"""The worked examples in the docs are doctests: they must keep printing what they claim."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("page", ["cost.md"])
def test_doc_examples_run(page):
    failures, tried = doctest.testfile(str(DOCS / page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


def test_api_page_lists_every_public_name_and_is_current():
    import importlib.util
    import sys

    import confroute

    spec = importlib.util.spec_from_file_location("gen_api_md", DOCS.parent / "tools" / "gen_api_md.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules["gen_api_md"] = gen
    spec.loader.exec_module(gen)
    text = (DOCS / "api.md").read_text()
    for name in confroute.__all__:
        assert f"| `{name}` |" in text, name
    if all(importlib.util.find_spec(m) for m in ("deepsparse", "onnxruntime", "transformers")):
        # Rendered with every extra installed (the full test venv); the numpy-2 venv lacks some.
        assert text == gen.render(), "docs/api.md is stale: run python tools/gen_api_md.py --write"
