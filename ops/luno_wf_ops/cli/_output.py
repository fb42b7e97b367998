"""Printing results: human tables (rich), or stable JSON (``-o json``) and JSON lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["Output"]

Columns = Sequence[tuple[str, str]]
"""``(key in the JSON row, column title)`` pairs."""


class Output:
    """Where a command's results go, in the format ``-o`` chose."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        wide = None if sys.stdout.isatty() else 200  # piped: do not squeeze to 80 columns
        self._console = Console(width=wide, highlight=False, soft_wrap=False)

    @property
    def human(self) -> bool:
        """Whether the output is for people (a table) rather than programs."""
        return self.format == "table"

    def rows(self, rows: list[dict[str, Any]], columns: Columns, *, empty: str = "") -> None:
        """A list of JSON rows: a table, a JSON array, or one JSON object per line."""
        if self.format == "json":
            self._write(json.dumps(rows, indent=2, ensure_ascii=False))
        elif self.format == "jsonl":
            for row in rows:
                self.line(row)
        elif not rows and empty:
            self._console.print(empty)
        else:
            table = Table(box=None, header_style="bold", pad_edge=False)
            for _, title in columns:
                table.add_column(title, overflow="fold")
            for row in rows:
                table.add_row(*(_cell(row.get(key)) for key, _ in columns))
            self._console.print(table)

    def item(self, data: dict[str, Any], text: str) -> None:
        """One result: ``text`` for people, else the JSON object (one line for jsonl)."""
        if self.format == "json":
            self._write(json.dumps(data, indent=2, ensure_ascii=False))
        elif self.format == "jsonl":
            self.line(data)
        else:
            self._console.print(text, markup=False)

    def line(self, data: dict[str, Any]) -> None:
        """One JSON object on one line (``--follow`` streams these in any JSON format)."""
        self._write(json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    def text(self, text: str) -> None:
        """Plain text for people (a diagram, a report), printed as is."""
        self._write(text.rstrip("\n"))

    @staticmethod
    def _write(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)
