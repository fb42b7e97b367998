"""MemTimeoutStore: timeouts in one process."""

from __future__ import annotations

import builtins
from datetime import datetime

import attrs

from .._clock import Clock, SystemClock
from .._timeoutrecord import TimeoutRecord

__all__ = ["MemTimeoutStore"]


class MemTimeoutStore:
    """A :class:`~luno_wf.adapter.TimeoutStore` held in memory; ids start at 1."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._rows: dict[int, TimeoutRecord] = {}
        self._next_id = 1
        self._keys: set[tuple[str, int, int, int]] = set()

    async def create(
        self,
        workflow_name: str,
        foreign_id: str,
        run_id: str,
        status: int,
        expire_at: datetime,
        *,
        timer: int = 0,
        version: int = 0,
    ) -> None:
        """Insert a timeout; a repeat of ``(run_id, status, timer, version)`` is ignored."""
        if expire_at.tzinfo is None:
            raise ValueError(f"expire_at must be timezone-aware, got {expire_at!r}")
        key = (run_id, int(status), timer, version)
        if key in self._keys:
            return
        self._keys.add(key)
        row = TimeoutRecord(
            id=self._next_id,
            workflow_name=workflow_name,
            foreign_id=foreign_id,
            run_id=run_id,
            status=int(status),
            completed=False,
            expire_at=expire_at,
            created_at=self._clock.now(),
            timer=timer,
            version=version,
        )
        self._rows[row.id] = row
        self._next_id += 1

    async def complete(self, id: int) -> None:
        """Mark a timeout as fired."""
        row = self._rows.get(id)
        if row is not None:
            self._rows[id] = attrs.evolve(row, completed=True)

    async def cancel(self, id: int) -> None:
        """Remove a timeout; unknown ids are ignored."""
        self._rows.pop(id, None)

    async def list(self, workflow_name: str) -> builtins.list[TimeoutRecord]:
        """Uncompleted timeouts of the workflow, in id order."""
        return [
            r for r in self._rows.values() if r.workflow_name == workflow_name and not r.completed
        ]

    async def list_valid(
        self, workflow_name: str, status: int, now: datetime
    ) -> builtins.list[TimeoutRecord]:
        """Due, uncompleted timeouts of that status, in id order."""
        return [
            r
            for r in self._rows.values()
            if r.workflow_name == workflow_name
            and r.status == status
            and not r.completed
            and r.expire_at <= now
        ]
