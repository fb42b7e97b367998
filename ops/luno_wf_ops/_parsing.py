"""Parsing what operators type: times, durations and ``module:attribute`` of an app."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from luno_wf import Workflow

__all__ = ["load_workflows", "parse_duration", "parse_moment"]

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)([wdhms])")


def parse_moment(text: str, name: str) -> datetime:
    """An ISO 8601 time (a browser's ``datetime-local`` value too); naive means UTC.

    Raises:
        ValueError: Not a time.

    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a time like 2024-05-01T12:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """A duration like ``30d``, ``12h``, ``1h30m``, ``90s`` or ``2w``.

    Raises:
        ValueError: Not such a duration, or zero.

    """
    cleaned = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 1h30m or 90s")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return timedelta(seconds=seconds)


def load_workflows(spec: str) -> list[Workflow[Any, Any]]:
    """The built workflows named by ``module:attribute``.

    The attribute is a :class:`~luno_wf.Workflow`, an iterable of them, or a function of no
    arguments returning either. The current directory is on the import path, as for
    ``python -m``.

    Raises:
        ValueError: ``spec`` is malformed, or does not name workflows.
        ImportError: The module does not import.

    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--app {spec!r}: expected module:attribute, e.g. myapp.workflows:all")
    if "" not in sys.path:
        sys.path.insert(0, "")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ValueError(
                f"--app {spec!r}: {module_name} has no attribute {attribute}"
            ) from None
    if callable(value) and not isinstance(value, Workflow):
        value = value()
    found = [value] if isinstance(value, Workflow) else _workflows_in(value, spec)
    return found


def _workflows_in(value: Any, spec: str) -> list[Workflow[Any, Any]]:
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        items = list(value)
        if all(isinstance(item, Workflow) for item in items):
            return items
    raise ValueError(f"--app {spec!r} is not a Workflow or a list of them: {value!r}")
