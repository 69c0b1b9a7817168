"""Every bad input in the catalogue gets the documented error, and the docs table is current."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_inputs import CASES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_bad_input(case):
    if case.error is None:
        assert str(case.call()) == case.expect
        return
    with pytest.raises(case.error) as info:
        case.call()
    assert case.expect in str(info.value)


def test_docs_table_is_current():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from gen_bad_inputs_table import render

    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert render() in doc, "docs/reliability.md is stale: run python tools/gen_bad_inputs_table.py"
