"""The rules of the house (docs/architecture.md), checked.

No import cycle: every module of ``soma_schedulers.testing`` imports alone in a fresh
interpreter, and the module-level import graph of the whole ``soma_schedulers`` package
(read with :mod:`ast`, nothing imported) has no cycle. No module reads another object's
private names. No module is over 500 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import soma_schedulers

PACKAGE_DIR = Path(soma_schedulers.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (``pkg`` for ``pkg/__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = ["soma_schedulers", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _module_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The imports run when the module is imported: not in functions or classes, nor under
    ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                found += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                found += _module_level(block)
        elif isinstance(node, ast.With):
            found += _module_level(node.body)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level.

    ``from X import name`` depends on ``X.name`` when that is a module (the package ``X`` may be
    half-initialised then, as Python allows), else on ``X`` itself.
    """
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _module_level(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
                continue
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else str(node.module)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                deps.add(sub if sub in MODULES else target)
        graph[name] = {d for d in deps if d in MODULES and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` (its modules, the first repeated at the end), or ``[]``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_graph_sees_the_harness_imports() -> None:
    graph = import_graph()
    assert "soma_schedulers.testing.cluster_lifecycle" in graph["soma_schedulers.testing.docker_harness"]
    assert "soma_schedulers.testing.harness_errors" in graph["soma_schedulers.testing.images"]


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_images_knows_no_clusters() -> None:
    deps = import_graph()["soma_schedulers.testing.images"]
    assert deps <= {"soma_schedulers.testing.harness_errors"}, deps


TESTING = sorted(m for m in MODULES if m.startswith("soma_schedulers.testing"))


@pytest.mark.parametrize("module", TESTING)
def test_module_imports_alone(module: str) -> None:
    """Imported first, in a fresh interpreter, each module of ``soma_schedulers.testing`` works."""
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                          check=False, cwd=PACKAGE_DIR.parent)
    assert proc.returncode == 0, proc.stderr


#: Underscore names of the standard library that are meant to be called.
STDLIB_PRIVATE_OK = {"os._exit", "sys._getframe"}


def _foreign_private_names(source: str) -> list[str]:
    """``obj._name`` where ``obj`` is not ``self``, ``cls`` or ``super()``: another object's private
    name (dunder names are not private)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            continue
        text = ast.unparse(node)
        if text not in STDLIB_PRIVATE_OK:
            found.append(f"{node.lineno}: {text}")
    return found


def test_the_scan_for_private_names_finds_them() -> None:
    source = "def f(sched, self):\n    sched._records.clear()\n    self._ok = super()._ok\n    os._exit(0)\n"
    assert _foreign_private_names(source) == ["2: sched._records"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_reads_another_objects_private_names(module: str) -> None:
    """The rule of docs/architecture.md: a class uses other classes' public hooks only."""
    assert _foreign_private_names(MODULES[module].read_text()) == []


#: The house's size limit for one module (docs/architecture.md, "Rules of the house").
MAX_MODULE_LINES = 500


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}
