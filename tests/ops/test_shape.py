"""The operator surface keeps the core's taste: short functions, imports at the top."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ops" / "luno_wf_ops"
MAX_FUNCTION_LINES = 60


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}", node))
    return found


def test_no_function_is_longer_than_60_lines() -> None:
    long = [
        f"{where} ({node.end_lineno - node.lineno + 1} lines)"
        for where, node in _functions()
        if node.end_lineno and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_no_import_hides_inside_a_function() -> None:
    hidden = [
        where
        for where, node in _functions()
        for inner in ast.walk(node)
        if isinstance(inner, ast.Import | ast.ImportFrom)
    ]
    assert hidden == []


def test_vendored_assets_are_in_the_package() -> None:
    static = PACKAGE / "static"
    assert (static / "htmx-2.0.11.min.js").read_text().startswith("var htmx=function()")
    assert {p.name for p in (PACKAGE / "templates").glob("*.html")} >= {
        "base.html",
        "overview.html",
        "runs.html",
        "run.html",
        "workflows.html",
    }
