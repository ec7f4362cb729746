"""The package's shape, read from its own source (ast): no import cycle between its modules, no
module over MODULE_LINES lines and no function over FUNCTION_LINES lines (DESIGN.md: small modules,
small functions).

Code that exceeds a limit today is listed below by name: a shrinking allow-list. A listed name that
is back within its limit fails the test until it is taken off the list, so the list only shrinks;
a new offender fails at once. `python -m tests.unit.test_structure` prints the sizes.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "jujubackup"
MODULE_LINES = 600
FUNCTION_LINES = 60

BIG_MODULES = frozenset({
})
"""Modules over MODULE_LINES today (issue 15: restore split by concern like archive/, ssh on fabric)."""

LONG_FUNCTIONS = frozenset({
})
"""Functions over FUNCTION_LINES today (a verb's typer signature counts: one line per option)."""

IMPORT_CYCLES: frozenset[frozenset[str]] = frozenset({
})
"""Import cycles tolerated today (function-level imports count)."""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int


def modules() -> list[Module]:
    """Return every module of the package, parsed."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        text = path.read_text(encoding="utf-8")
        found.append(Module(name, path, ast.parse(text), len(text.splitlines())))
    return found


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Yield the import statements that run (those under `if TYPE_CHECKING:` do not)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for n in node.orelse for n in _runtime_imports(ast.Module([n], [])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        else:
            yield from _runtime_imports(node)


def imports_of(module: Module, known: set[str]) -> set[str]:
    """Return the package modules `module` imports (at import time or inside a function)."""
    edges: set[str] = set()
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    for node in _runtime_imports(module.tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        edges.update(n for n in names if n in known and n != module.name)
    return edges


def import_cycles(mods: list[Module]) -> list[frozenset[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    known = {m.name for m in mods}
    graph = {m.name: imports_of(m, known) for m in mods}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(frozenset(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


def function_sizes(mods: list[Module]) -> dict[str, int]:
    """Return `module:function` (methods `module:Class.method`) -> lines, decorators included."""
    sizes: dict[str, int] = {}

    def walk(node: ast.AST, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                name = f"{prefix}{child.name}"
                sizes.setdefault(f"{module}:{name}", (child.end_lineno or start) - start + 1)
                walk(child, module, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, module, f"{prefix}{child.name}.")
            else:
                walk(child, module, prefix)

    for m in mods:
        walk(m.tree, m.name, "")
    return sizes


def test_no_import_cycle() -> None:
    cycles = set(import_cycles(modules()))
    shown = "; ".join(" <-> ".join(sorted(c)) for c in cycles - IMPORT_CYCLES)
    assert cycles - IMPORT_CYCLES == set(), f"import cycles: {shown}"
    assert IMPORT_CYCLES - cycles == set(), "gone: take them off IMPORT_CYCLES"


def test_no_module_over_the_limit_but_the_listed_ones() -> None:
    sizes = {m.name: m.lines for m in modules()}
    over = {name for name, lines in sizes.items() if lines > MODULE_LINES}
    assert over - BIG_MODULES == set(), {n: sizes[n] for n in over - BIG_MODULES}
    assert BIG_MODULES - over == set(), "within the limit now (or gone): take them off BIG_MODULES"


def test_no_function_over_the_limit_but_the_listed_ones() -> None:
    sizes = function_sizes(modules())
    over = {name for name, lines in sizes.items() if lines > FUNCTION_LINES}
    assert over - LONG_FUNCTIONS == set(), {n: sizes[n] for n in sorted(over - LONG_FUNCTIONS)}
    assert LONG_FUNCTIONS - over == set(), "within the limit now (or gone): take them off LONG_FUNCTIONS"


def test_the_cycle_finder_finds_a_lazy_cycle() -> None:
    """A function-level import counts (status <-> list was one); a TYPE_CHECKING one does not."""
    a = Module("p.a", Path("p/a.py"), ast.parse("def f():\n    from p.b import g\n"), 2)
    b = Module("p.b", Path("p/b.py"), ast.parse("from p import a\n"), 1)
    c = Module("p.c", Path("p/c.py"), ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                "    from p.a import f\n"), 3)
    assert import_cycles([a, b, c]) == [frozenset({"p.a", "p.b"})]


def report() -> str:
    """Return the module and function sizes over half the limits, biggest first."""
    mods = modules()
    lines = [f"modules over {MODULE_LINES // 2} lines (limit {MODULE_LINES}):"]
    lines += [f"  {m.lines:5d}  {m.name}" for m in sorted(mods, key=lambda m: -m.lines)
              if m.lines > MODULE_LINES // 2]
    lines.append(f"functions over {FUNCTION_LINES // 2} lines (limit {FUNCTION_LINES}):")
    sizes = function_sizes(mods)
    lines += [f"  {n:5d}  {name}" for name, n in sorted(sizes.items(), key=lambda kv: -kv[1])
              if n > FUNCTION_LINES // 2]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
