"""Shared workflow fixtures for the engine's tests."""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Any

import attrs

from luno_wf import Builder, Record
from luno_wf.memory import MemRoleScheduler, MemStreamer, MemTimeoutStore
from luno_wf.testing import FakeClock, TestingRecordStore


class Status(enum.IntEnum):
    UNKNOWN = 0
    STARTED = 1
    MIDDLE = 2
    END = 3
    OTHER = 4


@attrs.define
class Obj:
    id: str = ""
    count: int = 0
    note: str = ""


FAST = timedelta(milliseconds=10)


@attrs.define
class Stores:
    streamer: MemStreamer = attrs.field(factory=MemStreamer)
    store: TestingRecordStore = attrs.field(factory=TestingRecordStore)
    scheduler: MemRoleScheduler = attrs.field(factory=MemRoleScheduler)
    timeouts: MemTimeoutStore = attrs.field(factory=MemTimeoutStore)
    clock: FakeClock | None = None

    def __attrs_post_init__(self) -> None:
        if self.clock is not None:
            self.streamer = MemStreamer(clock=self.clock)
            self.store = TestingRecordStore(clock=self.clock)
            self.timeouts = MemTimeoutStore(clock=self.clock)

    def build(self, b: Builder[Any, Any], **options: Any) -> Any:
        if self.clock is not None:
            options.setdefault("clock", self.clock)
        if b.timeouts:
            options.setdefault("timeout_store", self.timeouts)
        return b.build(self.streamer, self.store, self.scheduler, **options)


def versions(store: TestingRecordStore, record: Record) -> list[int]:
    return [
        r.meta.version
        for r in store.snapshots(record.workflow_name, record.foreign_id, record.run_id)
    ]
