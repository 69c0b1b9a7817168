"""Render docs/api.md: every public name of confroute, one line each (from ``confroute.__all__``).

    python tools/gen_api_md.py          # print it
    python tools/gen_api_md.py --write  # write docs/api.md

tests/test_docs.py checks that docs/api.md is current.
"""

from __future__ import annotations

import inspect
import warnings
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

HEADER = """# API

Every public name of `confroute`, one line each, generated from `confroute.__all__` by
`python tools/gen_api_md.py --write` (a test keeps it current). Heavy backends load on first use.
Deprecated old names are not listed: they warn until 0.3, and the CHANGELOG's migration table
names the replacement of each.

| name | kind | module | what it is |
| --- | --- | --- | --- |
"""


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
        try:
            with warnings.catch_warnings():  # a deprecated name warns on access: listed, not used
                warnings.simplefilter("ignore", DeprecationWarning)
                obj = getattr(confroute, name)
            module = confroute._LAZY.get(name) or getattr(obj, "__module__", "confroute")
        except ImportError as exc:  # an optional backend that is not installed
            module = confroute._LAZY.get(name, "confroute")
            rows.append(f"| `{name}` | (optional) | `{module}` | needs an extra: {exc} |")
            continue
        kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else type(obj).__name__
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            kind = "warning" if issubclass(obj, Warning) else "exception"
        rows.append(f"| `{name}` | {kind} | `{module}` | {_summary(obj)} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    text = render()
    if "--write" in sys.argv:
        (ROOT / "docs" / "api.md").write_text(text)
    else:
        print(text, end="")
