"""Wrong wiring is a mypy error: snippets that must type-check and snippets that must fail.

Each ``fail_*.py`` case marks the lines that must be reported with ``# E: <code>``; the
case fails if mypy reports nothing there, or reports something anywhere else.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

CASES = Path(__file__).parent / "cases"
MARK = re.compile(r"#\s*E:\s*([a-z-]+)")


def run_mypy(path: Path) -> list[tuple[int, str]]:
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir=/dev/null",
            "--no-error-summary",
            "--show-error-codes",
            "--explicit-package-bases",
            "--config-file=",
            str(path),
        ]
    )
    errors = []
    for line in stdout.splitlines():
        match = re.match(rf"(?:.*/)?{re.escape(path.name)}:(\d+): error: .*\[([a-z-]+)\]$", line)
        if match:
            errors.append((int(match.group(1)), match.group(2)))
        elif ": error:" in line:
            raise AssertionError(f"unexpected mypy output: {line}\n{stdout}{stderr}")
    return errors


def expected(path: Path) -> list[tuple[int, str]]:
    return [
        (number, match.group(1))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if (match := MARK.search(line))
    ]


@pytest.mark.parametrize("case", sorted(CASES.glob("pass_*.py")), ids=lambda p: p.stem)
def test_correct_wiring_type_checks(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    assert run_mypy(case) == []


@pytest.mark.parametrize("case", sorted(CASES.glob("fail_*.py")), ids=lambda p: p.stem)
def test_wrong_wiring_is_a_type_error(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    marks = expected(case)
    assert marks, f"{case.name} marks no line with '# E: <code>'"
    assert sorted(set(run_mypy(case))) == sorted(set(marks))
