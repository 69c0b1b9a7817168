"""The shape of the package, checked from its source text (issue 21).

* No import cycle between modules of ``src/confroute``: the module graph is built with ``ast``
  from every import statement, including those inside functions and under ``TYPE_CHECKING``, so a
  lazy or type-only import back is a cycle too.
* No source file over 700 lines, no function over 80 lines of code, unless the line above its
  ``def`` says ``# long: <reason>``.
* No module imports another module's underscore name (a friend's private), except from
  ``__init__`` re-exports of its own package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "confroute"
MAX_FILE_LINES = 700
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the confroute modules it imports (every import statement, at any depth)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                # the longest confroute module the target names (a module, or a name in one)
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module and target.startswith("confroute"):
                    graph[module].add(target)
    # Importing a package runs its __init__: an edge to a submodule is also an edge to each
    # package on its path, which is how a cycle through an __init__ appears.
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_sees_a_lazy_cycle():
    # The finder itself: a cycle closed by a function-level import is found; a chain is not.
    assert find_cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    tree = ast.parse("def f():\n    from .b import g\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert _resolve("confroute.x.a", False, node) == "confroute.x.b"


def test_no_import_cycle_in_src():
    graph = import_graph()
    # The package __init__ files re-export their children; an edge from a child back to its own
    # package's __init__ (``from .. import x``) is what would close a cycle, and it is counted.
    cycles = [c for c in find_cycles(graph) if c != ["confroute"]]
    assert not cycles, "import cycles (including lazy and TYPE_CHECKING imports):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_source_file_over_700_lines():
    long = {str(p.relative_to(SRC)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def _code_lines(node: ast.AST, source_lines: list[str]) -> int:
    """Lines of a function that hold code: no blank line, comment or docstring."""
    body = list(getattr(node, "body", []))
    doc_lines: set[int] = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        doc_lines = set(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    count = 0
    for i in range(node.lineno, (node.end_lineno or node.lineno) + 1):  # type: ignore[attr-defined]
        text = source_lines[i - 1].strip()
        if text and not text.startswith("#") and i not in doc_lines:
            count += 1
    return count


def test_no_function_over_80_lines_without_a_reason():
    too_long = []
    for path in sorted(PKG.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node, lines)
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                reason = lines[first - 2].strip() if first >= 2 else ""
                if n > MAX_FUNCTION_LINES and not reason.startswith("# long:"):
                    too_long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not too_long, "functions over 80 lines of code with no '# long: <reason>' above them:\n" + "\n".join(too_long)


def _private_uses(module: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """Underscore names of another confroute module this module imports or reads.

    Private *modules* (``core/_json.py``) are the package's own implementation and may be
    imported anywhere inside it; a private *name* in another module is a friend's private.
    """
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}  # local name -> confroute module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            if not base.startswith("confroute"):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules:
                    aliases[alias.asname or alias.name] = full
                elif alias.name.startswith("_") and not alias.name.startswith("__") and base != module:
                    found.append(f"{module} imports {full}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            target = aliases[node.value.id]
            if node.attr.startswith("_") and not node.attr.startswith("__") and target != module:
                found.append(f"{module} reads {target}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_name():
    modules = _modules()
    friends = [use for module, path in modules.items() for use in _private_uses(module, path, modules)]
    assert not friends, "cross-module underscore names (make the name public in its home):\n" + "\n".join(
        sorted(set(friends))
    )


# __main__ runs the CLI; demo and predictors.export are deprecated aliases that warn on import.
@pytest.mark.parametrize("module", sorted(m for m in _modules() if m not in ("confroute.__main__", "confroute.demo", "confroute.predictors.export")))
def test_every_module_imports_alone(module):
    # Each module imports on its own (no hidden order dependence); optional backends may be absent.
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:  # an optional extra not installed in this environment
        if "pip install" not in str(exc) and "confroute[" not in str(exc):
            raise
