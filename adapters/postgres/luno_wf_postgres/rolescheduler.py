"""PostgresRoleScheduler: roles as session advisory locks, one connection per holder."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from luno_wf.errors import RoleLost

from ._pool import raise_if_cancelling
from ._schema import DEFAULT_SCHEMA, schema_identifier

__all__ = ["PostgresRoleScheduler"]

_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
_RELEASE = "SELECT pg_advisory_unlock(hashtextextended(%s, 0)), pg_notify(%s, %s)"


def _positive(value: timedelta, name: str) -> float:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValueError(f"{name} must be a positive timedelta, got {value!r}")
    return value.total_seconds()


class PostgresRoleScheduler:
    """A :class:`~luno_wf.adapter.RoleScheduler` on PostgreSQL session advisory locks.

    Each holding of a role opens its own connection and takes
    ``pg_try_advisory_lock(hashtextextended('<namespace>/<role>', 0))`` on it, so a role is
    held by one caller across every process on the database. Waiting retries the lock
    every ``poll_interval`` and at once when a holder announces a release (LISTEN/NOTIFY),
    and is cancellable at once. While held, the connection is checked every
    ``check_interval``; if the check fails (the connection or the server is gone, which
    also frees the lock for others) the body is cancelled and
    :class:`~luno_wf.errors.RoleLost` is raised out of the ``async with`` block.

    Args:
        conninfo: A libpq connection string or URI for the holders' own connections.
        namespace: Prefix of the lock names, so unrelated deployments on one database do
            not contend; letters, digits and underscores.
        poll_interval: How often a waiting caller retries the lock.
        check_interval: How often a holder checks its connection.
        check_timeout: How long a check may take before the role counts as lost.
        connect_kwargs: Extra keyword arguments for :meth:`psycopg.AsyncConnection.connect`.

    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        namespace: str = DEFAULT_SCHEMA,
        poll_interval: timedelta = timedelta(milliseconds=250),
        check_interval: timedelta = timedelta(seconds=1),
        check_timeout: timedelta = timedelta(seconds=5),
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        schema_identifier(namespace)  # validates
        self._conninfo = conninfo
        self._namespace = namespace
        self._channel = f"{namespace}_roles"
        self._poll = _positive(poll_interval, "poll_interval")
        self._check = _positive(check_interval, "check_interval")
        self._check_timeout = _positive(check_timeout, "check_timeout")
        self._connect_kwargs = dict(connect_kwargs or {})
        self._closed = False

    def await_role(self, role: str) -> _Lease:
        """Hold ``role`` for the duration of an ``async with`` block.

        Raises:
            ValueError: ``role`` is empty.
            RuntimeError: The scheduler is closed.

        """
        if not role:
            raise ValueError("role must be a non-empty string")
        if self._closed:
            raise RuntimeError(f"the PostgresRoleScheduler is closed (awaiting role {role!r})")
        return _Lease(self, role)

    async def close(self) -> None:
        """Refuse new :meth:`await_role` calls; safe twice.

        The scheduler shares no connection: each holding has its own, closed (and its lock
        released) when its block ends, so stop the workflow before closing its scheduler.
        """
        self._closed = True

    async def __aenter__(self) -> PostgresRoleScheduler:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        kwargs = {**self._connect_kwargs, "autocommit": True}
        return await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)


class _Lease:
    """One holding of a role: an async context manager, used once."""

    def __init__(self, scheduler: PostgresRoleScheduler, role: str) -> None:
        self._scheduler = scheduler
        self._role = role
        self._key = f"{scheduler._namespace}/{role}"
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._lost = False
        self._cancelled = False
        self._exiting = False

    async def __aenter__(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"a role lease of {self._role!r} cannot be entered twice")
        self._task = asyncio.current_task()
        scheduler = self._scheduler
        conn = await scheduler._connect()
        try:
            raise_if_cancelling()
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(scheduler._channel)))
            while True:
                cur = await conn.execute(_TRY_LOCK, (self._key,))
                row = await cur.fetchone()
                if row is not None and row[0]:
                    break
                # Sleep until a holder announces a release, or the poll interval passes.
                raise_if_cancelling()
                async for _ in conn.notifies(timeout=scheduler._poll, stop_after=1):
                    pass
            await conn.execute("UNLISTEN *")
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._watcher = asyncio.create_task(self._watch(conn), name=f"role-watch:{self._role}")

    async def _watch(self, conn: psycopg.AsyncConnection[Any]) -> None:
        scheduler = self._scheduler
        while True:
            await asyncio.sleep(scheduler._check)
            try:
                async with asyncio.timeout(scheduler._check_timeout):
                    await conn.execute("SELECT 1")
            except (psycopg.Error, TimeoutError):
                self._lose()
                return

    def _lose(self) -> None:
        self._lost = True
        if self._exiting or self._task is None:
            return
        self._cancelled = True
        self._task.cancel(f"role {self._role!r} lost: its database connection failed")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._exiting = True
        conn, watcher = self._conn, self._watcher
        self._conn = self._watcher = None
        try:
            if watcher is not None:
                watcher.cancel()
                await asyncio.wait([watcher])
            if conn is not None and not self._lost:
                try:
                    async with asyncio.timeout(self._scheduler._check_timeout):
                        await conn.execute(
                            _RELEASE, (self._key, self._scheduler._channel, self._key)
                        )
                except (psycopg.Error, TimeoutError):
                    pass  # closing the session below releases the lock anyway
        finally:
            if conn is not None:
                await conn.close()
        if not self._lost:
            return False
        if self._cancelled and self._task is not None and self._task.uncancel() > 0:
            return False  # cancelled from outside as well: let that cancellation through
        if exc is None or isinstance(exc, asyncio.CancelledError):
            raise RoleLost(f"role {self._role!r} was lost: its database connection failed")
        return False
