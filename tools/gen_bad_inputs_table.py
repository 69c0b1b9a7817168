"""Render the bad-input tables of docs/reliability.md from tests/bad_inputs.py.

    python tools/gen_bad_inputs_table.py          # print the tables
    python tools/gen_bad_inputs_table.py --write  # replace them in docs/reliability.md

The second table holds every bad request body tried against both endpoints of the Ray Serve
service, with the HTTP status and message the service's own ingress answers.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bad-inputs:begin -->", "<!-- bad-inputs:end -->"
BODIES_BEGIN, BODIES_END = "<!-- bad-bodies:begin -->", "<!-- bad-bodies:end -->"


def render() -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from bad_inputs import CASES

    rows = ["| bad input | what the user sees |", "| --- | --- |"]
    for case in CASES:
        try:
            outcome = case.call()
            seen = f"no error: `{outcome}`"
        except Exception as exc:  # noqa: BLE001 - we are documenting exactly these
            message = str(exc).replace("|", "\\|").replace("\n", " ")
            seen = f"`{type(exc).__name__}: {message}`"
        rows.append(f"| {case.what} | {seen} |")
    return "\n".join(rows)


def _cell(answer: tuple[int, str] | None) -> str:
    if answer is None:
        return "(no such body)"
    status, message = answer
    message = message.replace("|", "\\|").replace("\n", " ")
    return f"{status} `{message}`" if message else str(status)


def render_bodies() -> str:
    """The table of bad request bodies: status and message on both endpoints."""
    sys.path.insert(0, str(ROOT / "tests"))
    from bad_inputs import BAD_BODIES, served_answer

    rows = ["| bad body | `POST /route` | `POST /v2/models/toy/infer` |", "| --- | --- | --- |"]
    for body in BAD_BODIES:
        route = None if body.route is None else served_answer("route", body.route)
        infer = None if body.infer is None else served_answer("infer", body.infer)
        rows.append(f"| {body.what} | {_cell(route)} | {_cell(infer)} |")
    return "\n".join(rows)


def _replace(doc: str, begin: str, end: str, table: str) -> str:
    start, stop = doc.index(begin) + len(begin), doc.index(end)
    return doc[:start] + "\n" + table + "\n" + doc[stop:]


def main() -> None:
    table, bodies = render(), render_bodies()
    if "--write" not in sys.argv:
        print(table + "\n\n" + bodies)
        return
    doc_path = ROOT / "docs" / "reliability.md"
    doc = _replace(doc_path.read_text(), BEGIN, END, table)
    doc_path.write_text(_replace(doc, BODIES_BEGIN, BODIES_END, bodies))


if __name__ == "__main__":
    main()
