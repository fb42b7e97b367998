"""The engine's shape, as docs/architecture.md describes it, checked against the code."""

from __future__ import annotations

import ast
import enum
from pathlib import Path

import attrs

from luno_wf import Builder, Run, Workflow
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer

PACKAGE = Path(__file__).parent.parent / "luno_wf"
MAX_FUNCTION_LINES = 60
MAX_WORKFLOW_NAMES = 20


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(module: str, tree: ast.Module) -> set[str]:
    """The luno_wf modules ``module`` imports when it runs (not under TYPE_CHECKING)."""
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, ast.ImportFrom):
                base = _resolve(package, node.module, node.level)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, []))

    visit(tree.body)
    return {name for name in found if name.startswith("luno_wf")}


def _is_package(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()


def _resolve(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def test_workflow_shows_only_its_documented_verbs() -> None:
    class Status(enum.IntEnum):
        UNKNOWN = 0
        STARTED = 1
        DONE = 2

    @attrs.define
    class Obj:
        pass

    async def step(r: Run[Obj, Status]) -> Status:
        return Status.DONE

    b = Builder("shape", Obj, Status)
    b.add_step(Status.STARTED, step, Status.DONE)
    wf = b.build(MemStreamer(), MemRecordStore(), MemRoleScheduler(), metrics=False)
    public = [name for name in dir(wf) if not name.startswith("_")]
    assert len(public) <= MAX_WORKFLOW_NAMES, public
    assert set(public) <= {name for name in dir(Workflow) if not name.startswith("_")}


def test_no_process_module_imports_the_facade() -> None:
    for module, tree in _modules().items():
        if module.startswith("luno_wf._processes"):
            imports = _runtime_imports(module, tree)
            assert "luno_wf._workflow" not in imports, module


def test_no_function_level_imports() -> None:
    offenders = []
    for module, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        offenders.append(f"{module}:{inner.lineno} in {node.name}")
    assert offenders == []


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for module, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert long == []


def test_the_runtime_import_graph_has_no_cycle() -> None:
    modules = _modules()
    graph = {
        module: {
            name for name in _runtime_imports(module, tree) if name in modules and name != module
        }
        for module, tree in modules.items()
    }
    # A package's __init__ importing its own submodules is how re-exports work: not a cycle.
    for module in graph:
        graph[module] = {
            name for name in graph[module] if not (_is_package(module) and name.startswith(module))
        }
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None
