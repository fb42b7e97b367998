"""MemRecordStore: records and their outbox in one process."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import datetime

from .._clock import Clock, SystemClock
from .._deadletter import DeadLetter
from .._event import OutboxEvent
from .._filter import OrderType, RecordFilter, matches_filters
from .._history import HistoryEntry
from .._ids import check_foreign_id
from .._outbox import OutboxData, encode_outbox_data, new_outbox_id, outbox_data
from .._record import Record
from .._runstate import RunState
from ..errors import RecordNotFound, StaleRecord, WorkflowInProgress

__all__ = ["MemRecordStore"]


_Entry = tuple[Record, bool, bool]
"""A history entry as kept: (the record written, whether its object is kept, whether it is
scrubbed: reason and error read as empty). A plain tuple, cheap on every write; built into
a HistoryEntry on read."""


class MemRecordStore:
    """A :class:`~luno_wf.adapter.RecordStore` held in memory, keeping runs' history.

    It keeps the contract of the durable stores: each :meth:`store` writes the record and
    its outbox row in one step (no ``await`` inside, so nothing interleaves), is a
    compare-and-set on ``meta.version``, and refuses a second unfinished run of a foreign id.
    As a :class:`~luno_wf.adapter.HistoryStore` it appends a history entry in that same step
    (history stays in memory until :meth:`prune_history` removes it).
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._records: dict[str, Record] = {}
        self._seq: dict[str, int] = {}  # run id -> first-insertion position
        self._latest: dict[tuple[str, str], str] = {}
        self._unfinished: dict[tuple[str, str], str] = {}
        self._outbox: dict[str, dict[str, tuple[Record, datetime]]] = {}
        self._outbox_owner: dict[str, str] = {}
        self._history: dict[str, builtins.list[_Entry]] = {}  # run id -> entries, by version
        self._history_settings: dict[str, tuple[bool, bool]] = {}  # (enabled, objects)
        self._dead_letters: dict[str, DeadLetter] = {}  # by id, in the order set aside

    async def store(self, record: Record) -> None:
        """Insert or compare-and-set update ``record`` and append its outbox row."""
        self._store(record)

    def _store(self, record: Record) -> None:
        key = (record.workflow_name, record.foreign_id)
        existing = self._records.get(record.run_id)
        holder = self._unfinished.get(key)
        if (
            existing is None
            or existing.meta.version != record.meta.version - 1
            or holder not in (None, record.run_id)
        ):
            self._check(record, existing, holder)  # the usual update passes without a call
        if existing is None:
            self._seq[record.run_id] = len(self._seq)
            newest = self._records.get(self._latest.get(key, ""))
            if newest is None or record.created_at >= newest.created_at:
                self._latest[key] = record.run_id
        self._records[record.run_id] = record
        if record.run_state.finished():
            if holder == record.run_id:
                del self._unfinished[key]
        else:
            self._unfinished[key] = record.run_id

        # The row is kept as (record, time) and encoded only if listed as bytes: the
        # engine's publisher reads it decoded (list_outbox_data).
        outbox_id = new_outbox_id()
        self._outbox.setdefault(record.workflow_name, {})[outbox_id] = (record, self._clock.now())
        self._outbox_owner[outbox_id] = record.workflow_name
        self._append_history(record)

    @staticmethod
    def _check(record: Record, existing: Record | None, holder: str | None) -> None:
        """Raise if ``record`` may not be written (the compare-and-set and one unfinished run)."""
        if existing is None:
            check_foreign_id(record.foreign_id)
        elif existing.meta.version != record.meta.version - 1:
            raise StaleRecord(
                f"expected stored version {record.meta.version - 1}, found {existing.meta.version}",
                workflow_name=record.workflow_name,
                foreign_id=record.foreign_id,
                run_id=record.run_id,
            )
        if holder not in (None, record.run_id) and not record.run_state.finished():
            raise WorkflowInProgress(
                workflow_name=record.workflow_name,
                foreign_id=record.foreign_id,
                run_id=holder,
            )

    def _append_history(self, record: Record) -> None:
        enabled, objects = self._history_settings.get(record.workflow_name, _HISTORY_DEFAULT)
        deleted = record.run_state == RunState.DATA_DELETED
        entries = self._history.get(record.run_id)
        if deleted and entries:
            entries[:] = [(r, False, True) for r, _, _ in entries]
        if enabled:
            entry = (record, objects and not deleted, deleted)
            if entries is None:
                self._history[record.run_id] = [entry]
            else:
                entries.append(entry)

    async def set_aside(self, letter: DeadLetter) -> None:
        """Keep a dead letter (see :class:`~luno_wf.adapter.DeadLetterStore`)."""
        self._dead_letters[letter.id] = letter

    async def list_dead_letters(
        self, workflow_name: str | None = None, *, limit: int = 100
    ) -> builtins.list[DeadLetter]:
        """The dead letters (of one workflow, or all), oldest first."""
        found = [
            letter
            for letter in self._dead_letters.values()
            if workflow_name is None or letter.workflow_name == workflow_name
        ]
        return found[:limit]

    async def delete_dead_letter(self, id: str) -> None:
        """Forget a dead letter; an unknown id is not an error."""
        self._dead_letters.pop(id, None)

    async def store_many(self, records: Sequence[Record]) -> builtins.list[Exception | None]:
        """Store each record as :meth:`store` would; ``None`` or the refusal for each."""
        _distinct(records)
        outcomes: builtins.list[Exception | None] = []
        for record in records:
            try:
                self._store(record)
            except (StaleRecord, WorkflowInProgress) as err:
                outcomes.append(err)
            else:
                outcomes.append(None)
        return outcomes

    def configure_history(
        self, workflow_name: str, *, enabled: bool = True, objects: bool = False
    ) -> None:
        """Turn history, and object snapshots in it, on or off for the workflow's writes."""
        self._history_settings[workflow_name] = (enabled, objects)

    async def history(self, run_id: str) -> builtins.list[HistoryEntry]:
        """The run's history entries, oldest first.

        Raises:
            RecordNotFound: No run has that id.

        """
        if run_id not in self._records:
            raise RecordNotFound(run_id=run_id)
        return [
            HistoryEntry(
                workflow_name=r.workflow_name,
                foreign_id=r.foreign_id,
                run_id=run_id,
                version=r.meta.version,
                status=r.status,
                run_state=r.run_state,
                reason="" if scrubbed else r.meta.run_state_reason,
                actor=r.meta.actor,
                at=r.updated_at,
                error="" if scrubbed else r.meta.error,
                trace_id=r.meta.trace_id,
                object=r.object if kept else None,
            )
            for r, kept, scrubbed in self._history.get(run_id, ())
        ]

    async def prune_history(
        self, before: datetime, *, workflow_name: str | None = None, batch_size: int = 1000
    ) -> int:
        """Delete entries with ``at < before``, except each run's newest; how many went.

        Raises:
            ValueError: ``batch_size`` is below 1, or ``before`` is naive.

        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if before.tzinfo is None or before.utcoffset() is None:
            raise ValueError(f"before must be timezone-aware, got naive {before!r}")
        deleted = 0
        for entries in self._history.values():
            newest = entries[-1]
            kept = [
                e
                for e in entries
                if e is newest
                or e[0].updated_at >= before
                or (workflow_name is not None and e[0].workflow_name != workflow_name)
            ]
            deleted += len(entries) - len(kept)
            entries[:] = kept
        return deleted

    async def lookup(self, run_id: str) -> Record:
        """The record of ``run_id``."""
        try:
            return self._records[run_id]
        except KeyError:
            raise RecordNotFound(run_id=run_id) from None

    async def lookup_many(self, run_ids: Sequence[str]) -> dict[str, Record]:
        """The records of ``run_ids`` that exist, by run id."""
        records = self._records
        return {run_id: records[run_id] for run_id in run_ids if run_id in records}

    async def latest(self, workflow_name: str, foreign_id: str) -> Record:
        """The newest-created run of the foreign id."""
        run_id = self._latest.get((workflow_name, foreign_id))
        if run_id is None:
            raise RecordNotFound(workflow_name=workflow_name, foreign_id=foreign_id)
        return self._records[run_id]

    async def list(
        self,
        workflow_name: str,
        *,
        offset: int = 0,
        limit: int = 25,
        order: OrderType = OrderType.ASCENDING,
        filters: Sequence[RecordFilter] = (),
    ) -> builtins.list[Record]:
        """Matching records in first-stored order (reversed for DESCENDING), paginated."""
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, got {offset=} {limit=}")
        limit = limit or 25
        # dict order is first-insertion order
        records: Iterable[Record] = (
            reversed(self._records.values())
            if order == OrderType.DESCENDING
            else self._records.values()
        )
        out: builtins.list[Record] = []
        skipped = 0
        for record in records:
            if workflow_name and record.workflow_name != workflow_name:
                continue
            if not matches_filters(record, filters):
                continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(record)
            if len(out) == limit:
                break
        return out

    async def list_outbox_events(
        self, workflow_name: str, limit: int
    ) -> builtins.list[OutboxEvent]:
        """Unpublished rows of the workflow, oldest first."""
        rows = self._outbox.get(workflow_name)
        if not rows:
            return []
        out: builtins.list[OutboxEvent] = []
        for row_id, (record, created_at) in rows.items():
            data = outbox_data(record)
            out.append(
                OutboxEvent(
                    id=row_id,
                    workflow_name=workflow_name,
                    data=encode_outbox_data(data.run_id, data.type, data.headers),
                    created_at=created_at,
                )
            )
            if len(out) >= limit:
                break
        return out

    async def list_outbox_data(
        self, workflow_name: str, limit: int
    ) -> builtins.list[tuple[str, OutboxData]]:
        """Unpublished rows of the workflow, decoded, oldest first."""
        rows = self._outbox.get(workflow_name)
        if not rows:
            return []
        out: builtins.list[tuple[str, OutboxData]] = []
        for row_id, (record, created_at) in rows.items():
            out.append((row_id, outbox_data(record, created_at)))
            if len(out) >= limit:
                break
        return out

    async def delete_outbox_event(self, id: str) -> None:
        """Remove a row; missing rows are ignored."""
        owner = self._outbox_owner.pop(id, None)
        if owner is not None:
            del self._outbox[owner][id]

    async def delete_outbox_events(self, ids: Sequence[str]) -> None:
        """Remove many rows; missing rows are ignored."""
        for id in ids:
            owner = self._outbox_owner.pop(id, None)
            if owner is not None:
                del self._outbox[owner][id]


_HISTORY_DEFAULT = (True, False)  # history on, without object snapshots


def _distinct(records: Sequence[Record]) -> None:
    """Refuse a batch naming one run twice."""
    seen: set[str] = set()
    for record in records:
        if record.run_id in seen:
            raise ValueError(f"store_many got run {record.run_id!r} twice in one batch")
        seen.add(record.run_id)
