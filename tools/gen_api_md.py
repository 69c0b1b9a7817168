"""Render docs/api.md: every public name of confroute, one line each (from ``confroute.__all__``).

    python tools/gen_api_md.py          # print it
    python tools/gen_api_md.py --write  # write docs/api.md

tests/test_docs.py checks that docs/api.md is current.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

HEADER = """# API

Every public name of `confroute`, one line each, generated from `confroute.__all__` by
`python tools/gen_api_md.py --write` (a test keeps it current). Heavy backends load on first use.
Names marked *deprecated* stay for one release; the CHANGELOG has the migration table.

| name | kind | module | what it is |
| --- | --- | --- | --- |
"""


#: Old names kept for one release, and what replaces them.
DEPRECATED = {
    "EvaluationResult": "Evaluation",
    "CascadeEvaluation": "Evaluation",
    "evaluate_cascade": "evaluate",
    "choose_threshold": "choose_thresholds",
    "choose_cascade_thresholds": "choose_thresholds",
    "choose_per_class_thresholds": "choose_thresholds(per_class=True)",
}


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return first.replace("|", "\\|")


def render() -> str:
    import confroute

    rows = []
    for name in confroute.__all__:
        if name == "__version__":
            rows.append(f"| `__version__` | str | `confroute` | the installed version ({confroute.__version__}) |")
            continue
        module = confroute._LAZY.get(name) or getattr(getattr(confroute, name), "__module__", "confroute")
        try:
            obj = getattr(confroute, name)
        except ImportError as exc:  # an optional backend that is not installed
            rows.append(f"| `{name}` | (optional) | `{module}` | needs an extra: {exc} |")
            continue
        kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else type(obj).__name__
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            kind = "warning" if issubclass(obj, Warning) else "exception"
        note = f"*deprecated: use `{DEPRECATED[name]}`.* " if name in DEPRECATED else ""
        rows.append(f"| `{name}` | {kind} | `{module}` | {note}{_summary(obj)} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    text = render()
    if "--write" in sys.argv:
        (ROOT / "docs" / "api.md").write_text(text)
    else:
        print(text, end="")
