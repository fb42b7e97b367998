"""Every python block of README.md and docs/*.md type-checks, and the programs among them run.

The convention for code in the documentation:

- Every fenced block tagged ``python`` (or ``py``, ``python3``) is a complete module, imports
  included, and must pass ``mypy --strict``. There is no way to skip a block.
- A block preceded by the line ``<!-- snippet: continue -->`` continues the previous python
  block of its page: it is appended to that block's module and checked with it, so it may
  use what the blocks before it imported and defined.
- A module whose last line is ``asyncio.run(main())`` is a program: it is also run, in a
  subprocess with a time limit, and must exit 0. Programs use the in-memory adapters (or
  other code that needs no server); blocks that need PostgreSQL or Kafka are type-checked.
- Besides luno_wf and its adapters, snippets may import the repository's own modules
  (``examples.quickstart``) and stand-ins for a reader's application, ``myapp`` and
  ``my_package``, from ``tests/docs/``.

Pages are found by glob, so a new page is checked as soon as it exists. Failures name the
page and line of the block.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# Where snippets' imports resolve: this checkout (not whatever is installed), each adapter
# distribution's folder, and the stand-ins for a reader's own code.
IMPORT_PATH = [
    ROOT,
    ROOT / "adapters" / "postgres",
    ROOT / "adapters" / "kafka",
    ROOT / "adaptertest",
    ROOT / "ops",
    Path(__file__).resolve().parent / "docs",
]
PYTHON_TAGS = {"python", "py", "python3"}
CONTINUE = "<!-- snippet: continue -->"
PROGRAM_END = "asyncio.run(main())"
RUN_TIMEOUT = 60.0  # seconds; the programs take about one
# Appended to each module mypy checks: a module mypy did not check (ignored by a
# "# type: ignore" on its first line, say) has no note for it, and the test fails.
SENTINEL = 'reveal_type("checked")'

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
ANY_MARKER = re.compile(r"<!--\s*snippet\b", re.IGNORECASE)


@dataclass
class Block:
    """One fenced python block: its page, the line of its opening fence, its code."""

    page: Path
    line: int
    lines: list[str]
    continues: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass
class Module:
    """One or more blocks checked together, and where each of its lines comes from."""

    blocks: list[Block]
    lines: list[str] = field(default_factory=list)
    origin: list[str] = field(default_factory=list)  # "page:line" of each line

    @property
    def where(self) -> str:
        return self.blocks[0].where

    @property
    def is_program(self) -> bool:
        code = [line.strip() for line in self.lines if line.strip()]
        return bool(code) and code[-1] == PROGRAM_END

    def add(self, block: Block) -> None:
        if self.lines:
            self.lines.append("")
            self.origin.append(block.where)
        self.blocks.append(block)
        self.lines.extend(block.lines)
        page = block.page.relative_to(ROOT)
        self.origin.extend(f"{page}:{block.line + i}" for i in range(1, len(block.lines) + 1))

    def place(self, line: int) -> str:
        """The page and line of the module's line ``line`` (1-based)."""
        return self.origin[min(max(line, 1), len(self.origin)) - 1]


def parse(page: Path) -> tuple[list[Block], list[str]]:
    """The page's python blocks, and what is wrong with its fences or markers."""
    text = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    where = page.relative_to(ROOT)
    index = 0
    while index < len(text):
        opening = FENCE.match(text[index])
        if opening is None:
            line = text[index].strip()
            if line == CONTINUE:
                following = next((t for t in text[index + 1 :] if t.strip()), "")
                if not FENCE.match(following):
                    problems.append(f"{where}:{index + 1}: {CONTINUE} not followed by a block")
            elif ANY_MARKER.search(line):
                problems.append(f"{where}:{index + 1}: unknown marker {line!r}")
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        if fence[0] == "`" and "`" in opening["info"]:  # inline code, not a fence
            index += 1
            continue
        tag = (opening["info"].split() or [""])[0].lower()
        end = index + 1
        while end < len(text) and not re.fullmatch(
            rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", text[end]
        ):
            end += 1
        if end == len(text):
            problems.append(f"{where}:{index + 1}: the fence opened here is never closed")
            break
        previous = next((t.strip() for t in reversed(text[:index]) if t.strip()), "")
        continues = previous == CONTINUE
        if tag in PYTHON_TAGS:
            body = text[index + 1 : end]
            code = [line[indent:] if not line[:indent].strip() else line.lstrip() for line in body]
            blocks.append(Block(page, index + 1, code, continues))
        elif continues:
            problems.append(f"{where}:{index + 1}: {CONTINUE} above a {tag or 'plain'} block")
        index = end + 1
    return blocks, problems


def collect(pages: list[Path]) -> tuple[list[Module], list[str]]:
    modules: list[Module] = []
    problems: list[str] = []
    for page in pages:
        blocks, page_problems = parse(page)
        problems += page_problems
        current: Module | None = None
        for block in blocks:
            if block.continues:
                if current is None:
                    problems.append(f"{block.where}: {CONTINUE} but no python block before it")
                    current = Module([])
                current.add(block)
            else:
                current = Module([])
                modules.append(current)
                current.add(block)
    return modules, problems


MODULES, PROBLEMS = collect(PAGES)
PROGRAMS = [module for module in MODULES if module.is_program]


def file_name(module: Module) -> str:
    return f"snippet_{MODULES.index(module)}.py"


@dataclass
class Outcome:
    """What mypy said about each module, and how each program ended."""

    errors: dict[str, list[str]]  # file name -> mypy's messages, placed on the pages
    checked: set[str]  # file names mypy reported the sentinel for
    runs: dict[str, tuple[int | None, str]]  # file name -> (exit status, output)


def relocate(module: Module, text: str, name: str) -> str:
    """Point references to the module's lines (``snippet_3.py:12``, ``line 12``) at pages."""
    text = re.sub(rf"{re.escape(name)}:(\d+)", lambda m: module.place(int(m[1])), text)
    return re.sub(
        rf'File "[^"]*{re.escape(name)}", line (\d+)',
        lambda m: f"File {module.place(int(m[1]))}",
        text,
    )


def environment() -> dict[str, str]:
    env = dict(os.environ)
    path = os.pathsep.join(str(p) for p in IMPORT_PATH)
    env["MYPYPATH"] = path
    env["PYTHONPATH"] = path
    return env


def type_check(directory: Path, sentinels: dict[str, int]) -> tuple[dict[str, list[str]], set[str]]:
    """Run mypy once over every module; ``sentinels`` gives each file's sentinel line."""
    names = list(sentinels)
    # --follow-imports=silent: only the snippets' own errors are reported. The library is
    # checked by `mypy .` under the project's configuration; here (no configuration) its
    # modules found through MYPYPATH would report aiokafka's missing stubs, for instance.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir=/dev/null",
            "--config-file=",
            "--follow-imports=silent",
            "--show-error-codes",
            "--no-error-summary",
            "--no-color-output",
            *names,
        ],
        cwd=directory,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors: dict[str, list[str]] = {name: [] for name in names}
    checked: set[str] = set()
    for line in result.stdout.splitlines():
        match = re.match(r"(?P<file>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<msg>.*)$", line)
        if match is None or match["file"] not in errors:
            raise AssertionError(f"unexpected mypy output: {line}\n{result.stdout}{result.stderr}")
        if match["kind"] == "note" and int(match["line"]) == sentinels[match["file"]]:
            checked.add(match["file"])
        else:
            errors[match["file"]].append(line)
    if result.returncode not in (0, 1) or result.stderr.strip():
        raise AssertionError(
            f"mypy failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return errors, checked


def run_programs(directory: Path, names: list[str]) -> dict[str, tuple[int | None, str]]:
    """Run every program at once; each has RUN_TIMEOUT seconds."""
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-W", "error", name],
            cwd=directory,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in names
    }
    runs: dict[str, tuple[int | None, str]] = {}
    for name, process in processes.items():
        try:
            output, _ = process.communicate(timeout=RUN_TIMEOUT)
            runs[name] = (process.returncode, output)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            runs[name] = (None, output)
    return runs


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    checks = tmp_path_factory.mktemp("check")  # no __init__.py: a folder of plain modules
    runs = tmp_path_factory.mktemp("run")
    sentinels = {}
    syntax: dict[str, list[str]] = {}
    for module in MODULES:
        name = file_name(module)
        code = "\n".join(module.lines) + "\n"
        (runs / name).write_text(code, encoding="utf-8")
        try:
            ast.parse(code, name)
        except SyntaxError as error:
            # A syntax error stops mypy altogether: report it here and leave the module out.
            syntax[name] = [f"{name}:{error.lineno}: error: {error.msg}  [syntax]"]
            continue
        (checks / name).write_text(f"{code}{SENTINEL}\n", encoding="utf-8")
        sentinels[name] = len(module.lines) + 1
    errors, checked = type_check(checks, sentinels)
    errors |= syntax
    return Outcome(errors, checked, run_programs(runs, [file_name(m) for m in PROGRAMS]))


def test_pages_and_blocks_are_found() -> None:
    assert ROOT / "README.md" in PAGES
    assert len(PAGES) > 10, PAGES
    assert PROGRAMS
    # An independent count of python fences: the parser must not lose any.
    tags = "|".join(PYTHON_TAGS)
    pattern = re.compile(rf"^\s*(`{{3,}}|~{{3,}})\s*({tags})\b", re.IGNORECASE)
    fences = sum(
        1 for page in PAGES for line in page.read_text().splitlines() if pattern.match(line)
    )
    assert fences == sum(len(module.blocks) for module in MODULES)


def test_fences_and_markers_are_well_formed() -> None:
    if PROBLEMS:
        pytest.fail("\n".join(PROBLEMS), pytrace=False)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.where)
def test_block_type_checks(module: Module, outcome: Outcome) -> None:
    name = file_name(module)
    blocks = ", ".join(block.where for block in module.blocks)
    errors = [relocate(module, error, name) for error in outcome.errors[name]]
    if errors:
        pytest.fail(f"mypy --strict on {blocks}:\n" + "\n".join(errors), pytrace=False)
    if name not in outcome.checked:
        pytest.fail(f"mypy did not check {blocks} (a type: ignore comment?)", pytrace=False)


@pytest.mark.parametrize("module", PROGRAMS, ids=lambda m: m.where)
def test_program_runs(module: Module, outcome: Outcome) -> None:
    name = file_name(module)
    blocks = ", ".join(block.where for block in module.blocks)
    status, output = outcome.runs[name]
    output = relocate(module, output, name)
    if status is None:
        pytest.fail(f"{blocks} still running after {RUN_TIMEOUT:.0f} s:\n{output}", pytrace=False)
    if status != 0:
        pytest.fail(f"{blocks} exited with status {status}:\n{output}", pytrace=False)
