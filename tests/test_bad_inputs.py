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


# -- the service's answers to bad request bodies (issue 24) -------------------------------------------

def _bodies():
    from bad_inputs import BAD_BODIES

    return [(b.what, endpoint, body) for b in BAD_BODIES
            for endpoint, body in (("route", b.route), ("infer", b.infer)) if body is not None]


@pytest.mark.parametrize("what, endpoint, body", _bodies(), ids=[f"{w}-{e}" for w, e, _ in _bodies()])
def test_the_service_answers_a_bad_body_with_a_short_400(what, endpoint, body):
    pytest.importorskip("starlette")
    from bad_inputs import served_answer

    status, message = served_answer(endpoint, body)
    assert status == 400, (status, message)
    assert message and len(message) <= 300 and "\n" not in message
    assert "Traceback" not in message and 'File "' not in message


def test_docs_bodies_table_is_current():
    pytest.importorskip("starlette")
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from gen_bad_inputs_table import render_bodies

    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert render_bodies() in doc, "docs/reliability.md is stale: run python tools/gen_bad_inputs_table.py --write"
