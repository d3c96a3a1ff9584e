"""No import cycle anywhere in xbctl/: every import counts, those deferred into functions too.

A cycle hidden in a function-level import still ties two modules together (each needs the
other loaded to work) and breaks the layering the architecture describes. Imports under
`if TYPE_CHECKING:` are left out: they name types for readers and type checkers, never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import xbctl

ROOT = Path(xbctl.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in ROOT.rglob("*.py")}


def _owner(name: str) -> str:
    """The module NAME is in (a name imported from a module is that module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _is_type_checking(statement: ast.If) -> bool:
    test = statement.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str) -> set[str]:
    """The xbctl modules NAME imports, wherever in it the import is."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for statement in child.orelse:
                    visit_one(statement)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(_owner(alias.name) for alias in node.names if alias.name.startswith("xbctl"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.startswith("xbctl"):
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    found.add(submodule if submodule in MODULES else _owner(base))
        visit(node)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph[module]):
            if other not in index:
                connect(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return found


def test_no_import_cycle_in_xbctl():
    graph = {name: imports_of(name) for name in MODULES}
    found = cycles(graph)
    assert found == [], "\n".join(
        " <-> ".join(group) + ": " + "; ".join(f"{m} imports {sorted(graph[m] & set(group))}" for m in group)
        for group in found
    )


def test_the_walk_sees_deferred_and_relative_imports():
    # What the walk must see for the test above to mean anything: a function-level import
    # (the CLI loads each command's module when it runs), a relative import from a
    # subpackage two levels down, and a type-only import left out.
    assert "xbctl.cli.typer_app" in imports_of("xbctl.cli.main")  # `from .typer_app import` inside _dispatch
    assert "xbctl.rules" in imports_of("xbctl.transports.xenstore.model")  # `from ...rules import`
    assert "xbctl.transports.xenstore.transport" not in imports_of("xbctl.transports.xenstore.txn")  # TYPE_CHECKING
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
