"""Stand-in for an adapter author's package, which docs/adapters.md imports."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from luno_wf.memory import MemRecordStore


@contextlib.asynccontextmanager
async def my_store_factory() -> AsyncIterator[MemRecordStore]:
    """A fresh, empty record store for each entry (the author's own store in real life)."""
    yield MemRecordStore()
