"""The package's layout keeps its promises (docs/architecture.rst).

- no import cycle between offload's modules (imports inside functions
  count: they hide a cycle, they do not remove it; imports under
  ``if TYPE_CHECKING:`` do not, since they never run);
- no module reaches for an underscore-private name of another module;
- no module over ``MAX_LINES`` lines without a reason written at its top;
- ``import offload.api`` loads no process or Dask module, and no toolkit.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tooling

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "offload"

#: Longest module without a written reason (STYLE.md: split past ~500).
MAX_LINES = 500

#: What a long module writes near its top to say why it stays whole.
LENGTH_REASON = "Why this module is long:"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    tree: ast.AST, module: str, is_package: bool
) -> list[tuple[str, list[tuple[str, str]]]]:
    """``(imported module, [(name taken from it, local name)])`` for every
    import that runs."""
    found: list[tuple[str, list[tuple[str, str]]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)  # import a.b
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(
                (target, [(alias.name, alias.asname or alias.name) for alias in node.names])
            )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    """Module -> offload modules it imports; and the private reaches found."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    reaches: list[str] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}
        for target, names in _imports(tree, name, path.name == "__init__.py"):
            if not target.startswith("offload"):
                continue
            for imported, local in names:
                submodule = f"{target}.{imported}"
                if submodule in modules:
                    graph[name].add(submodule)
                    aliases[local] = submodule
                else:
                    if target in modules:
                        graph[name].add(target)
                    if imported.startswith("_") and not imported.startswith("__"):
                        reaches.append(f"{name} imports {target}.{imported}")
            if not names and target in modules:
                graph[name].add(target)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                reaches.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    # A module imports its packages' __init__ too; those are not cycles
    # worth reporting unless the __init__ imports back.
    return graph, reaches


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def test_no_import_cycle():
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_module_uses_another_modules_private_names():
    _, reaches = _graph()
    assert reaches == []


def test_long_modules_say_why():
    unexplained = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_LINES and LENGTH_REASON not in text[:3000]:
            unexplained.append(f"{name}: {lines} lines")
    assert unexplained == []


def test_importing_the_api_loads_no_backend_but_threads():
    code = (
        "import sys, offload.api\n"
        "heavy = sorted(name for name in sys.modules if name.startswith(("
        "'offload._backends.process', 'offload._backends.dask', 'dask', "
        "'distributed', 'PySide6', 'PyQt5', 'PyQt6', 'wx', 'pyface')))\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_lazy_name_loads_its_backend():
    code = (
        "import sys, offload.api\n"
        "offload.api.MultiprocessingContext\n"
        "print('offload._backends.process.context' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "True"
