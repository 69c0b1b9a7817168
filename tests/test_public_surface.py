"""The public surface is closed: every type a public function or method returns is exported."""

from __future__ import annotations

import inspect
import typing

import pytest

import confroute


def _confroute_classes(annotation: object) -> set[type]:
    """The confroute classes named in an annotation (through unions, generics, tuples)."""
    found: set[type] = set()
    stack = [annotation]
    while stack:
        a = stack.pop()
        if inspect.isclass(a) and a.__module__.startswith("confroute"):
            found.add(a)
        stack.extend(typing.get_args(a))
    return found


def _public_callables() -> list[tuple[str, object]]:
    out = []
    for name in confroute.__all__:
        try:
            obj = getattr(confroute, name)
        except ImportError:  # an optional backend not installed here
            continue
        if inspect.isclass(obj):
            out.append((name, obj.__init__))
            out += [(f"{name}.{m}", f) for m, f in vars(obj).items()
                    if not m.startswith("_") and inspect.isfunction(getattr(f, "__func__", f))]
        elif callable(obj):
            out.append((name, obj))
    return out


@pytest.mark.parametrize("name, func", _public_callables(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_returned_type_is_exported(name, func):
    func = getattr(func, "__func__", func)
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # noqa: BLE001 - an annotation naming an optional backend's type
        pytest.skip("annotations need an optional backend")
    exported = {getattr(confroute, n) for n in confroute.__all__ if n != "__version__"}
    missing = {c.__qualname__ for c in _confroute_classes(hints.get("return")) if c not in exported}
    assert not missing, f"{name} returns {sorted(missing)}, which confroute does not export"
