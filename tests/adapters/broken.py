"""The in-memory adapters, each with one known defect, for proving the suite catches it."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

import attrs

from luno_wf import (
    Ack,
    Event,
    EventReceiver,
    EventSender,
    HistoryEntry,
    OrderType,
    OutboxEvent,
    Record,
    RecordFilter,
    TimeoutRecord,
)
from luno_wf.errors import RecordNotFound, StaleRecord, WorkflowInProgress
from luno_wf.memory import MemRecordStore, MemStreamer, MemTimeoutStore


class _DelegatingStore:
    """A record store passing every call to a :class:`MemRecordStore`."""

    def __init__(self) -> None:
        self.inner = MemRecordStore()

    async def store(self, record: Record) -> None:
        await self.inner.store(record)

    async def lookup(self, run_id: str) -> Record:
        return await self.inner.lookup(run_id)

    async def latest(self, workflow_name: str, foreign_id: str) -> Record:
        return await self.inner.latest(workflow_name, foreign_id)

    async def list(
        self,
        workflow_name: str,
        *,
        offset: int = 0,
        limit: int = 25,
        order: OrderType = OrderType.ASCENDING,
        filters: Sequence[RecordFilter] = (),
    ) -> list[Record]:
        return await self.inner.list(
            workflow_name, offset=offset, limit=limit, order=order, filters=filters
        )

    async def list_outbox_events(
        self, workflow_name: str, limit: int
    ) -> builtins.list[OutboxEvent]:
        return await self.inner.list_outbox_events(workflow_name, limit)

    async def delete_outbox_event(self, id: str) -> None:
        await self.inner.delete_outbox_event(id)


class StaleWriteAccepted(_DelegatingStore):
    """Defect: an update is a blind upsert; a stale version overwrites the stored record."""

    async def store(self, record: Record) -> None:
        try:
            current = await self.inner.lookup(record.run_id)
        except RecordNotFound:
            await self.inner.store(record)
            return
        meta = attrs.evolve(record.meta, version=current.meta.version + 1)
        await self.inner.store(attrs.evolve(record, meta=meta))


class OutboxMissingOnUpdate(_DelegatingStore):
    """Defect: only inserts write an outbox row; updates lose theirs."""

    async def store(self, record: Record) -> None:
        try:
            await self.inner.lookup(record.run_id)
            update = True
        except RecordNotFound:
            update = False
        await self.inner.store(record)
        if update:
            rows = await self.inner.list_outbox_events(record.workflow_name, 10**9)
            await self.inner.delete_outbox_event(rows[-1].id)


class LatestByLastStored(_DelegatingStore):
    """Defect: latest is the run stored last (luno's memrecordstore), not the newest created."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[tuple[str, str], str] = {}

    async def store(self, record: Record) -> None:
        await self.inner.store(record)
        self.last[(record.workflow_name, record.foreign_id)] = record.run_id

    async def latest(self, workflow_name: str, foreign_id: str) -> Record:
        run_id = self.last.get((workflow_name, foreign_id))
        if run_id is None:
            raise RecordNotFound(workflow_name=workflow_name, foreign_id=foreign_id)
        return await self.inner.lookup(run_id)


class HistoryOfRefusedWrites(MemRecordStore):
    """Defect: a refused write (stale, or in progress) still appends a history entry.

    As a store would that appends the entry in a transaction of its own.
    """

    def __init__(self) -> None:
        super().__init__()
        self.refused: dict[str, list[HistoryEntry]] = {}

    def _store(self, record: Record) -> None:
        try:
            super()._store(record)
        except (StaleRecord, WorkflowInProgress):
            entry = HistoryEntry(
                workflow_name=record.workflow_name,
                foreign_id=record.foreign_id,
                run_id=record.run_id,
                version=record.meta.version,
                status=record.status,
                run_state=record.run_state,
                reason=record.meta.run_state_reason,
                actor=record.meta.actor,
                at=record.updated_at,
                error=record.meta.error,
                trace_id=record.meta.trace_id,
            )
            self.refused.setdefault(record.run_id, []).append(entry)
            raise

    async def history(self, run_id: str) -> builtins.list[HistoryEntry]:
        entries = [*await super().history(run_id), *self.refused.get(run_id, [])]
        return sorted(entries, key=lambda e: e.version)


class HistoryOfTheLastRival(MemRecordStore):
    """Defect: a write that loses the race for a version replaces that version's entry.

    As a store would that upserts entries by (run id, version) outside the record's
    compare-and-set: the run's record is the winner's, its history the last rival's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rivals: dict[tuple[str, int], Record] = {}

    def _store(self, record: Record) -> None:
        try:
            super()._store(record)
        except StaleRecord:
            self.rivals[(record.run_id, record.meta.version)] = record
            raise

    async def history(self, run_id: str) -> builtins.list[HistoryEntry]:
        entries = await super().history(run_id)
        for i, entry in enumerate(entries):
            rival = self.rivals.get((run_id, entry.version))
            if rival is not None:
                entries[i] = attrs.evolve(
                    entry,
                    status=rival.status,
                    run_state=rival.run_state,
                    reason=rival.meta.run_state_reason,
                    actor=rival.meta.actor,
                    at=rival.updated_at,
                    error=rival.meta.error,
                    trace_id=rival.meta.trace_id,
                    object=None if entry.object is None else rival.object,
                )
        return entries


class _AckingOnClose:
    """A receiver that acks whatever it has in flight when closed."""

    def __init__(self, inner: EventReceiver) -> None:
        self.inner = inner
        self.unacked: dict[int, Ack] = {}

    async def recv(self) -> tuple[Event, Ack]:
        event, ack = await self.inner.recv()
        self.unacked[event.id] = ack

        async def acking() -> None:
            self.unacked.pop(event.id, None)
            await ack()

        return event, acking

    async def close(self) -> None:
        for ack in list(self.unacked.values()):
            await ack()
        self.unacked.clear()
        await self.inner.close()


class LostUnackedEvent:
    """Defect: a closing receiver acks its un-acked events, so they are never redelivered."""

    def __init__(self) -> None:
        self.inner = MemStreamer()

    async def new_sender(self, topic: str) -> EventSender:
        return await self.inner.new_sender(topic)

    async def new_receiver(
        self,
        topic: str,
        name: str,
        *,
        stream_from_latest: bool = False,
        poll_frequency: timedelta | None = None,
    ) -> EventReceiver:
        inner = await self.inner.new_receiver(topic, name, stream_from_latest=stream_from_latest)
        return _AckingOnClose(inner)


class ShardIgnored(MemStreamer):
    """Defect: a shard receiver takes every event of its topic, not only its shard's."""

    async def new_shard_receiver(
        self,
        topic: str,
        name: str,
        *,
        shard: int,
        total: int,
        stream_from_latest: bool = False,
        poll_frequency: timedelta | None = None,
    ) -> EventReceiver:
        if not 1 <= shard <= total:
            raise ValueError(f"shard must be in 1..total, got {shard} of {total}")
        return await self.new_receiver(topic, name, stream_from_latest=stream_from_latest)


class TwoHoldersOfOneRole:
    """Defect: ``await_role`` never waits, so every instance holds the role at once."""

    def await_role(self, role: str) -> contextlib.AbstractAsyncContextManager[None]:
        return _no_lock()


@contextlib.asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield


class DueStrictlyBeforeNow(MemTimeoutStore):
    """Defect: a timeout expiring exactly at ``now`` is not due yet (luno's SQL store)."""

    async def list_valid(
        self, workflow_name: str, status: int, now: datetime
    ) -> list[TimeoutRecord]:
        rows = await super().list_valid(workflow_name, status, now)
        return [r for r in rows if r.expire_at < now]
