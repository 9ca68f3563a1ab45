"""The house's rules on imports, read from the source (ast, nothing executed): the generator never imports
the search, and no two modules import each other, directly or around a circle (function-level imports
included)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("fasternet_space", "search", "spaces")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path, packages: tuple[str, ...] = PACKAGES, scripts: tuple[str, ...] = ("cli.py",)
                    ) -> dict[str, Path]:
    found = {module_name(p, root): p for package in packages for p in (root / package).rglob("*.py")}
    found.update({module_name(root / s, root): root / s for s in scripts if (root / s).exists()})
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports anywhere in its body. `from P import X` counts as importing
    P.X when that is a module, else P."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path, **kwargs) -> dict[str, set[str]]:
    modules = project_modules(root, **kwargs)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_generator_never_imports_the_search():
    graph = import_graph(ROOT)
    upward = {name: sorted(m for m in deps if m == "search" or m.startswith("search."))
              for name, deps in graph.items() if name.split(".")[0] == "fasternet_space"}
    assert {name: deps for name, deps in upward.items() if deps} == {}


def test_no_module_imports_another_that_imports_it_back():
    assert cycles(import_graph(ROOT)) == []


def test_the_walk_sees_function_level_and_relative_imports_and_finds_circles(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .b import thing\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from pkg import c\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\n")
    (tmp_path / "pkg" / "d.py").write_text("from pkg.a import x\n")
    graph = import_graph(tmp_path, packages=("pkg",), scripts=())
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    (tmp_path / "pkg" / "c.py").write_text("import json\n")
    assert cycles(import_graph(tmp_path, packages=("pkg",), scripts=())) == []
