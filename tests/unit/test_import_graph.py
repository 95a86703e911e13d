"""The modules of mlops_model import each other without cycles.

The graph is read from the source with :mod:`ast`, nothing is imported: every
``import`` and ``from ... import`` statement of every module under
``model/src/mlops_model``, at module level or inside a function, class or
``try``/``if`` block, relative imports resolved. Only edges between modules of
the package count. ``from pkg import name`` is an edge to the module ``pkg.name``
when there is one, else to ``pkg``; the implicit import of parent packages is not
an edge (a package ``__init__`` that imports its own submodules is no cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "model" / "src"
PACKAGE = "mlops_model"

Graph = dict[str, set[str]]


def module_files(source: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``source``."""
    modules: dict[str, Path] = {}
    for path in sorted((source / package).rglob("*.py")):
        parts = path.relative_to(source).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a ``from ... import`` statement names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    parts = (module if is_package else module.rpartition(".")[0]).split(".")
    if node.level > len(parts):
        raise ValueError(f"{module}:{node.lineno}: relative import beyond the top package")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def imports_of(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules in ``modules`` that the import statements of one module load."""
    found: set[str] = set()
    for node in ast.walk(tree):  # every statement at any depth: inside functions too
        if isinstance(node, ast.Import):
            for alias in node.names:
                # ``import a.b.c`` loads a.b.c; its parent packages are implicit
                name = alias.name
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name:
                    found.add(name)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, is_package)
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in modules:  # from pkg import submodule
                    found.add(submodule)
                elif target in modules:  # from module import name
                    found.add(target)
    return found


def import_graph(source: Path = SOURCE, package: str = PACKAGE) -> Graph:
    """Module -> the modules of ``package`` it imports."""
    files = module_files(source, package)
    return {
        name: imports_of(
            ast.parse(path.read_text(), filename=str(path)),
            name,
            path.name == "__init__.py",
            set(files),
        )
        for name, path in files.items()
    }


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)

    cycles: list[list[str]] = []
    for component in components:
        members = set(component)
        start = min(component)
        if len(component) == 1 and start not in graph.get(start, ()):
            continue
        cycles.append(_cycle_through(graph, start, members))
    return sorted(cycles)


def _cycle_through(graph: Graph, start: str, members: set[str]) -> list[str]:
    """A shortest path from ``start`` back to itself inside one component (BFS)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for succ in sorted(graph.get(node, ())):
                if succ not in members:
                    continue
                if succ == start:
                    path = [node]  # back from node to start, then turned around
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if succ not in parents:
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


# ------------------------------------------------------------------ the package


def test_mlops_model_has_no_import_cycle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, f"import cycle(s) in {PACKAGE}:\n{describe(cycles)}"


def test_the_graph_sees_the_package() -> None:
    """Guards the guard: a parser that found no edges would find no cycles either."""
    graph = import_graph()
    assert "mlops_model.serving.backends" in graph
    assert "mlops_model.serving.checks" in graph["mlops_model.serving.backends"]
    # an import inside a function counts
    assert "mlops_model.data" in graph["mlops_model.serving.checks"]
    assert "mlops_model.serving.app" in graph["mlops_model.serving.gunicorn_conf"]
    # only edges inside the package
    assert all(t.startswith(PACKAGE) for targets in graph.values() for t in targets)


# ------------------------------------------------------------------ the checker itself


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from pkg.b import x\n",
                "pkg/b.py": "def f():\n    from . import c\n",
                "pkg/c.py": "import pkg.a\n",
            },
            [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]],
            id="absolute, relative and in-function imports",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "",
                "pkg/sub/x.py": "from ..y import f\n",
                "pkg/y.py": "from pkg.sub import x\n",
            },
            [["pkg.sub.x", "pkg.y", "pkg.sub.x"]],
            id="two-level relative import and from-package-import-submodule",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "from pkg.a import A\n",
                "pkg/a.py": "import os\nimport numpy\nA = 1\n",
                "pkg/b.py": "from pkg import a\nfrom pkg.a import A\n",
            },
            [],
            id="a package importing its submodule, outside imports: no cycle",
        ),
        pytest.param(
            {"pkg/__init__.py": "", "pkg/a.py": "from pkg import a\n"},
            [["pkg.a", "pkg.a"]],
            id="a module importing itself",
        ),
    ],
)
def test_cycles_are_found_and_named(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    graph = import_graph(write(tmp_path, files), "pkg")
    assert find_cycles(graph) == expected
