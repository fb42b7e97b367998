"""PostgresRoleScheduler: roles as session advisory locks, one connection per holder.

Waiting needs no connection of its own: one connection per scheduler watches the locks
its waiting callers want and tells them when one looks free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from luno_wf.errors import RoleLost

from ._pool import Closing, raise_if_cancelling, stop_task
from ._schema import DEFAULT_SCHEMA, schema_identifier

__all__ = ["PostgresRoleScheduler"]

_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
_RELEASE = "SELECT pg_advisory_unlock(hashtextextended(%s, 0)), pg_notify(%s, %s)"
# Which of the given lock names no session holds now (a bigint advisory lock shows in
# pg_locks as classid = its high 32 bits, objid = its low 32 bits, objsubid = 1).
_FREE = """
SELECT n.name FROM unnest(%s::text[]) AS n(name)
CROSS JOIN LATERAL (SELECT hashtextextended(n.name, 0) AS key) AS h
WHERE NOT EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
      AND l.classid = ((h.key >> 32) & 4294967295)::oid
      AND l.objid = (h.key & 4294967295)::oid)"""


def _positive(value: timedelta, name: str) -> float:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValueError(f"{name} must be a positive timedelta, got {value!r}")
    return value.total_seconds()


class PostgresRoleScheduler(Closing):
    """A :class:`~luno_wf.adapter.RoleScheduler` on PostgreSQL session advisory locks.

    Each holding of a role opens its own connection and takes
    ``pg_try_advisory_lock(hashtextextended('<namespace>/<role>', 0))`` on it, so a role is
    held by one caller across every process on the database. A caller that finds the role
    taken closes that connection and waits on the scheduler's one watching connection,
    which looks at the locks its callers want every ``poll_interval`` and at once when a
    holder announces a release (LISTEN/NOTIFY); waiting is cancellable at once. So a
    process holds one connection per role it holds, plus one while any of its callers
    waits, not one per role it waits for. While held, the connection is checked every
    ``check_interval``; if the check fails (the connection or the server is gone, which
    also frees the lock for others) the body is cancelled and
    :class:`~luno_wf.errors.RoleLost` is raised out of the ``async with`` block.

    Args:
        conninfo: A libpq connection string or URI for the holders' own connections.
        namespace: Prefix of the lock names, so unrelated deployments on one database do
            not contend; letters, digits and underscores.
        poll_interval: How often the watch looks at the locks callers wait for.
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
        self._watch = _Watch(self)

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
        """Refuse new :meth:`await_role` calls and close the waiting watch; safe twice.

        Each holding has its own connection, closed (and its lock released) when its block
        ends, so stop the workflow before closing its scheduler.
        """
        self._closed = True
        await self._watch.close()

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
        while True:
            raise_if_cancelling()
            if scheduler._closed:
                raise RuntimeError(f"the PostgresRoleScheduler is closed (awaiting {self._role!r})")
            conn = await scheduler._connect()
            try:
                cur = await conn.execute(_TRY_LOCK, (self._key,))
                row = await cur.fetchone()
            except BaseException:
                await conn.close()
                raise
            if row is not None and row[0]:
                break
            # Held elsewhere: wait, without a connection of our own, until it looks free.
            await conn.close()
            raise_if_cancelling()
            await scheduler._watch.wait_free(self._key)
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


class _Watch:
    """One connection per scheduler, telling waiting leases when their lock looks free.

    While any lease waits, it asks the server which of the wanted locks no session holds,
    then sleeps until a holder announces a release (LISTEN/NOTIFY) or ``poll_interval``
    passes, and asks again. A lease told its lock is free tries to take it on a connection
    of its own (another process may win the race; then it waits again). If the watch's
    connection fails, every waiter is told to try, and the watch reconnects.
    """

    def __init__(self, scheduler: PostgresRoleScheduler) -> None:
        self._scheduler = scheduler
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    async def wait_free(self, key: str) -> None:
        """Return once ``key``'s lock looks free (cancellable)."""
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="role-watch")
        try:
            await event.wait()
        finally:
            events = self._waiters.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[key]

    async def close(self) -> None:
        """Stop watching; waiting leases wake (and fail: the scheduler is closed)."""
        task, self._task = self._task, None
        await stop_task(task)
        self._wake_all()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _run(self) -> None:
        scheduler = self._scheduler
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(scheduler._channel))
        backoff = 0.1
        while self._waiters:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await scheduler._connect()
                await conn.execute(listen)
                backoff = 0.1
                while self._waiters:
                    # A lease that starts waiting meanwhile tried the lock just before, so
                    # it is looked at with the next release or poll.
                    cur = await conn.execute(_FREE, (list(self._waiters),))
                    for (name,) in await cur.fetchall():
                        for event in self._waiters.get(name, ()):
                            event.set()
                    raise_if_cancelling()
                    async for _ in conn.notifies(timeout=scheduler._poll, stop_after=1):
                        pass
            except psycopg.Error:
                # Let every waiter try the lock itself; look again after a back-off.
                self._wake_all()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if conn is not None:
                    await conn.close()
