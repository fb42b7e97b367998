"""PostgresTimeoutStore: run timeouts in PostgreSQL."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from luno_wf import Clock, SystemClock, TimeoutRecord

from ._pool import AutocommitConnections, PoolAdapter, PoolOrDsn
from ._schema import DEFAULT_SCHEMA, Statements

__all__ = ["PostgresTimeoutStore"]

_COLUMNS = (
    "id, workflow_name, foreign_id, run_id, status, completed, expire_at, created_at, "
    "timer, version"
)

_TEMPLATES = {
    "create": """
INSERT INTO {s}.timeouts (workflow_name, foreign_id, run_id, status, expire_at, created_at,
                          timer, version)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (run_id, status, timer, version) DO NOTHING""",
    "complete": "UPDATE {s}.timeouts SET completed = true WHERE id = %s",
    "cancel": "UPDATE {s}.timeouts SET cancelled = true WHERE id = %s",
    "list": f"""
SELECT {_COLUMNS} FROM {{s}}.timeouts
WHERE workflow_name = %s AND NOT completed AND NOT cancelled ORDER BY id""",
    "list_valid": f"""
SELECT {_COLUMNS} FROM {{s}}.timeouts
WHERE workflow_name = %s AND status = %s AND NOT completed AND NOT cancelled
  AND expire_at <= %s
ORDER BY id""",
}


def _timeout(row: tuple[Any, ...]) -> TimeoutRecord:
    (
        id,
        workflow_name,
        foreign_id,
        run_id,
        status,
        completed,
        expire_at,
        created_at,
        timer,
        version,
    ) = row
    return TimeoutRecord(
        id=int(id),
        workflow_name=workflow_name,
        foreign_id=foreign_id,
        run_id=run_id,
        status=int(status),
        completed=bool(completed),
        expire_at=expire_at.astimezone(UTC),
        created_at=created_at.astimezone(UTC),
        timer=int(timer),
        version=int(version),
    )


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment!r}")
    return moment


class PostgresTimeoutStore(PoolAdapter):
    """A :class:`~luno_wf.adapter.TimeoutStore` on PostgreSQL.

    Ids come from an identity column: increasing in creation order, starting at 1.
    :meth:`list_valid` is inclusive of ``now`` and ordered by id, like the in-memory store.

    Args:
        pool: An open :class:`psycopg_pool.AsyncConnectionPool` (yours: the store never
            closes it), or a DSN from which the store opens its own pool at its first call
            and closes it in :meth:`close`. Each call borrows one connection for one
            statement (kept a moment for the next call).
        schema: The schema :func:`~luno_wf_postgres.migrate` created.
        clock: Stamps ``created_at`` (defaults to the wall clock).
        pool_kwargs: With a DSN, keyword arguments for the store's own
            :class:`~psycopg_pool.AsyncConnectionPool` (default ``min_size=1, max_size=10``).

    """

    def __init__(
        self,
        pool: PoolOrDsn,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._conns = AutocommitConnections(
            pool, owner="PostgresTimeoutStore", pool_kwargs=pool_kwargs, schema=schema
        )
        self._clock = clock or SystemClock()
        self._sql = Statements(schema, _TEMPLATES)

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
        """Insert a timeout; a repeat of ``(run_id, status, timer, version)`` is ignored.

        The repeat stays ignored after the first is completed or cancelled.

        Raises:
            ValueError: ``expire_at`` is naive.

        """
        params = (
            workflow_name,
            foreign_id,
            run_id,
            int(status),
            _aware(expire_at, "expire_at"),
            self._clock.now(),
            int(timer),
            int(version),
        )
        async with self._conns.connection() as conn:
            await conn.execute(self._sql.get("create", conn), params)

    async def complete(self, id: int) -> None:
        """Mark a timeout as fired; an unknown id is ignored."""
        async with self._conns.connection() as conn:
            await conn.execute(self._sql.get("complete", conn), (id,))

    async def cancel(self, id: int) -> None:
        """Remove a timeout from every listing; an unknown id is ignored."""
        async with self._conns.connection() as conn:
            await conn.execute(self._sql.get("cancel", conn), (id,))

    async def list(self, workflow_name: str) -> builtins.list[TimeoutRecord]:
        """Uncompleted timeouts of the workflow, in id order."""
        async with self._conns.connection() as conn:
            cur = await conn.execute(self._sql.get("list", conn), (workflow_name,))
            rows = await cur.fetchall()
        return [_timeout(row) for row in rows]

    async def list_valid(
        self, workflow_name: str, status: int, now: datetime
    ) -> builtins.list[TimeoutRecord]:
        """Uncompleted timeouts of that status with ``expire_at <= now``, in id order.

        Raises:
            ValueError: ``now`` is naive.

        """
        params = (workflow_name, int(status), _aware(now, "now"))
        async with self._conns.connection() as conn:
            cur = await conn.execute(self._sql.get("list_valid", conn), params)
            rows = await cur.fetchall()
        return [_timeout(row) for row in rows]
