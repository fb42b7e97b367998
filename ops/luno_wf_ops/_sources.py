"""Where listed runs and counts come from: any record store, read through its Protocol.

:class:`ScanSource` works on any :class:`~luno_wf.RecordStore` by reading its records in
first-stored order (the order ``list()`` guarantees) and filtering them here; that is what
the in-memory store needs. PostgreSQL is queried directly instead (``_postgres.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol

import attrs

from luno_wf import OrderType, Record, RecordStore, RunState, decode_outbox_data

from ._criteria import Criteria
from ._model import ConsumerLag, OutboxStat

__all__ = ["Listed", "RunSource", "ScanSource", "TallyKey"]

TallyKey = tuple[str, int, str, RunState]
"""(workflow, status, status description, run state) of a count."""

_CHUNK = 500
_OUTBOX_SCAN = 10_000


@attrs.frozen(kw_only=True)
class Listed:
    """A listed run, as a source reads it; ``position`` is its keyset key."""

    position: int
    workflow_name: str
    foreign_id: str
    run_id: str
    status: int
    description: str
    run_state: RunState
    version: int
    created_at: datetime
    updated_at: datetime
    reason: str

    @classmethod
    def of(cls, position: int, record: Record) -> Listed:
        """The listed form of ``record``."""
        return cls(
            position=position,
            workflow_name=record.workflow_name,
            foreign_id=record.foreign_id,
            run_id=record.run_id,
            status=record.status,
            description=record.meta.status_description,
            run_state=record.run_state,
            version=record.meta.version,
            created_at=record.created_at,
            updated_at=record.updated_at,
            reason=record.meta.run_state_reason,
        )


class RunSource(Protocol):
    """Reads runs for the service layer: pages, counts, the outbox, timeouts."""

    async def page(
        self, criteria: Criteria, before: int | None, limit: int
    ) -> tuple[list[Listed], bool]:
        """Up to ``limit`` matching runs, newest first, below position ``before``.

        The flag says whether more follow.
        """
        ...

    async def count(self, criteria: Criteria) -> int:
        """How many runs match."""
        ...

    async def tally(self, criteria: Criteria, loaded: frozenset[str]) -> dict[TallyKey, int]:
        """Matching runs counted by workflow, status and run state.

        The status description is needed only for the workflows not in ``loaded`` (the
        others' statuses are named from their enums); it may be empty for those.
        """
        ...

    async def workflow_runs(self) -> dict[str, int]:
        """Every workflow with runs in the store, and how many."""
        ...

    async def workflow_names(self) -> list[str]:
        """The names of the workflows with runs in the store, sorted (no counting)."""
        ...

    async def outbox(self, workflow_names: list[str]) -> list[OutboxStat]:
        """The unpublished outbox rows of each workflow that has some."""
        ...

    async def consumer_lag(self) -> list[ConsumerLag] | None:
        """Each event-stream consumer's backlog (None: the store cannot tell)."""
        ...

    async def outbox_pending(self, record: Record) -> bool | None:
        """Whether an event of the run waits in the outbox (None: cannot tell)."""
        ...

    async def timeouts(self, record: Record) -> list[tuple[int, datetime]] | None:
        """The run's pending timeouts as ``(status, expire at)`` (None: cannot tell)."""
        ...


class ScanSource:
    """A :class:`RunSource` over any record store, reading every candidate record.

    A run's position is its place in first-stored order among the runs of the query's
    workflow and foreign id (what never changes about a run), so a cursor stays valid
    while runs are added and move.
    """

    def __init__(self, store: RecordStore) -> None:
        self._store = store

    async def _records(self, criteria: Criteria) -> AsyncIterator[tuple[int, Record]]:
        filters = criteria.immutable_filters()
        offset = 0
        while True:
            chunk = await self._store.list(
                criteria.workflow or "",
                offset=offset,
                limit=_CHUNK,
                order=OrderType.ASCENDING,
                filters=filters,
            )
            for index, record in enumerate(chunk):
                yield offset + index, record
            if len(chunk) < _CHUNK:
                return
            offset += len(chunk)

    async def page(
        self, criteria: Criteria, before: int | None, limit: int
    ) -> tuple[list[Listed], bool]:
        """See :meth:`RunSource.page`."""
        newest: deque[tuple[int, Record]] = deque(maxlen=limit + 1)
        async for position, record in self._records(criteria):
            if before is not None and position >= before:
                break
            if criteria.matches(record):
                newest.append((position, record))
        rows = [Listed.of(position, record) for position, record in reversed(newest)]
        return rows[:limit], len(rows) > limit

    async def count(self, criteria: Criteria) -> int:
        """See :meth:`RunSource.count`."""
        return sum([1 async for _, record in self._records(criteria) if criteria.matches(record)])

    async def tally(self, criteria: Criteria, loaded: frozenset[str]) -> dict[TallyKey, int]:
        """See :meth:`RunSource.tally`."""
        counts: dict[TallyKey, int] = {}
        async for _, r in self._records(criteria):
            if criteria.matches(r):
                key = (r.workflow_name, r.status, r.meta.status_description, r.run_state)
                counts[key] = counts.get(key, 0) + 1
        return counts

    async def workflow_runs(self) -> dict[str, int]:
        """See :meth:`RunSource.workflow_runs`."""
        runs: dict[str, int] = {}
        async for _, record in self._records(Criteria()):
            runs[record.workflow_name] = runs.get(record.workflow_name, 0) + 1
        return runs

    async def workflow_names(self) -> list[str]:
        """See :meth:`RunSource.workflow_names`."""
        return sorted(await self.workflow_runs())

    async def outbox(self, workflow_names: list[str]) -> list[OutboxStat]:
        """See :meth:`RunSource.outbox` (counts up to 10,000 rows per workflow)."""
        stats: list[OutboxStat] = []
        for name in workflow_names:
            rows = await self._store.list_outbox_events(name, _OUTBOX_SCAN)
            if rows:
                oldest = min(row.created_at for row in rows)
                stats.append(OutboxStat(workflow_name=name, pending=len(rows), oldest=oldest))
        return stats

    async def outbox_pending(self, record: Record) -> bool | None:
        """See :meth:`RunSource.outbox_pending`."""
        rows = await self._store.list_outbox_events(record.workflow_name, _OUTBOX_SCAN)
        for row in rows:
            try:
                if decode_outbox_data(row.data).run_id == record.run_id:
                    return True
            except ValueError:
                continue
        return False

    async def timeouts(self, record: Record) -> list[tuple[int, datetime]] | None:
        """See :meth:`RunSource.timeouts`: a record store alone cannot tell."""
        return None

    async def consumer_lag(self) -> list[ConsumerLag] | None:
        """See :meth:`RunSource.consumer_lag`: a record store alone cannot tell."""
        return None
