"""Render the bad-input table of docs/reliability.md from tests/bad_inputs.py.

    python tools/gen_bad_inputs_table.py          # print the table
    python tools/gen_bad_inputs_table.py --write  # replace it in docs/reliability.md
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bad-inputs:begin -->", "<!-- bad-inputs:end -->"


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


def main() -> None:
    table = render()
    if "--write" not in sys.argv:
        print(table)
        return
    doc_path = ROOT / "docs" / "reliability.md"
    doc = doc_path.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    doc_path.write_text(doc[:start] + "\n" + table + "\n" + doc[end:])


if __name__ == "__main__":
    main()
