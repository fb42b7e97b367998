"""In-memory adapters: the embedded default for the quickstart, examples and users' tests.

They keep the same contracts as the durable adapters (and pass the same conformance
suite), within one process.
"""

from __future__ import annotations

from ._memory.connector import MemConnector as MemConnector
from ._memory.recordstore import MemRecordStore as MemRecordStore
from ._memory.rolescheduler import MemRoleScheduler as MemRoleScheduler
from ._memory.streamer import MemStreamer as MemStreamer
from ._memory.timeoutstore import MemTimeoutStore as MemTimeoutStore

__all__ = [
    "MemConnector",
    "MemRecordStore",
    "MemRoleScheduler",
    "MemStreamer",
    "MemTimeoutStore",
]
