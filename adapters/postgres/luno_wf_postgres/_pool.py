"""Borrowing pool connections for single-statement autocommit work."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from time import monotonic
from types import TracebackType
from typing import Any, Self, TypeAlias

from psycopg import AsyncConnection, AsyncCursor, ProgrammingError
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import UndefinedFunction, UndefinedTable
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, AsyncNullConnectionPool

__all__ = [
    "AutocommitConnections",
    "Closing",
    "PoolAdapter",
    "PoolOrDsn",
    "raise_if_cancelling",
    "stop_task",
]

PoolOrDsn: TypeAlias = "AsyncConnectionPool[Any] | str"
"""What an adapter is built on: the caller's pool, or a DSN to open its own pool from."""

# The pool an adapter opens from a DSN, unless ``pool_kwargs`` says otherwise: every engine
# process may hold a connection for a statement at once, so allow a few.
_OWN_POOL_DEFAULTS: Mapping[str, Any] = {"min_size": 1, "max_size": 10}

_IDLE = TransactionStatus.IDLE
# A connection kept between calls goes back to the pool once unused for this long...
_KEEP_IDLE_SECONDS = 0.05
# ...and after a call ending this long after it was taken from the pool, so the pool's own
# housekeeping (max_lifetime, checks, fairness) still sees every connection regularly.
_KEEP_AT_MOST_SECONDS = 1.0


class AutocommitConnections:
    """Autocommit connections of a pool, kept for a moment between calls of one adapter.

    Taking a connection from the pool and switching it to autocommit (and back) costs
    more CPU than a short statement itself. An adapter making call after call keeps the
    connections it used in autocommit mode and reuses them; one unused for 50 ms, or taken
    from the pool over a second ago, goes back to the pool in the pool's own mode, and so
    does every connection while another client of the pool is waiting for one. A
    connection is lent to one call at a time; one not idle after its call (cancelled
    mid-query, broken) goes straight back to the pool, which repairs or discards it.
    A null pool (:class:`psycopg_pool.AsyncNullConnectionPool`) is used call by call.

    Given a DSN instead of a pool, it makes its own pool (no I/O until the first call),
    opens it on first use and closes it in :meth:`close`.
    """

    def __init__(
        self,
        pool: PoolOrDsn,
        *,
        owner: str,
        pool_kwargs: Mapping[str, Any] | None = None,
        schema: str | None = None,
    ) -> None:
        self._owner = owner
        self._schema = schema
        self._closed = False
        self._open_lock = asyncio.Lock()
        if isinstance(pool, str):
            kwargs = {**_OWN_POOL_DEFAULTS, **(pool_kwargs or {})}
            self._dsn: str | None = pool
            self._connect_kwargs: Mapping[str, Any] = kwargs.get("kwargs") or {}
            self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                pool, open=False, name=owner, **kwargs
            )
            self._opened = False
        elif isinstance(pool, AsyncConnectionPool):
            if pool_kwargs:
                raise ValueError(
                    f"{owner}: pool_kwargs applies only to a pool opened from a DSN; "
                    "configure your own pool when you create it"
                )
            self._dsn = None
            self._connect_kwargs = {}
            self._pool = pool
            self._opened = True
        else:
            raise TypeError(
                f"{owner} needs a psycopg_pool.AsyncConnectionPool or a DSN string, "
                f"got {type(pool).__name__}"
            )
        self._keep = not isinstance(self._pool, AsyncNullConnectionPool)
        # Kept connections, least recently used first, with when they were last given back.
        self._idle: list[tuple[AsyncConnection[Any], float]] = []
        # Lent or kept connections: when taken from the pool, and whether it was autocommit.
        self._taken: dict[AsyncConnection[Any], tuple[float, bool]] = {}
        # Their cursors, one per statement: a cursor executing the same query object again
        # keeps its adaptation state (dumpers and loaders already looked up).
        self._cursors: dict[AsyncConnection[Any], dict[bytes, AsyncCursor[Any]]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_loop: asyncio.AbstractEventLoop | None = None
        self._returning: set[asyncio.Task[None]] = set()

    def same_database(self, other: AutocommitConnections) -> bool:
        """Whether ``other`` reaches the same database as these connections.

        True for the same pool, or for pools whose connection strings (and connection
        keyword arguments) name the same host, port and database (a DSN is compared once
        parsed, so its form does not matter).
        """
        if other._pool is self._pool:
            return True
        target = _target(self._pool)
        return target is not None and target == _target(other._pool)

    async def pool(self) -> AsyncConnectionPool[Any]:
        """The pool, opened first if this object opens it from a DSN."""
        self._check_open()
        if not self._opened:
            await self._open()
        return self._pool

    async def _open(self) -> None:
        async with self._open_lock:
            if self._opened:
                return
            self._check_open()
            assert self._dsn is not None
            # One plain connection first: a wrong DSN, password or database is reported with
            # the server's own message, rather than as a pool timeout half a minute later.
            probe = await AsyncConnection.connect(self._dsn, **self._connect_kwargs)
            await probe.close()
            self._check_open()  # closed meanwhile: open nothing
            try:
                await self._pool.open(wait=True)
            except BaseException:
                # Cancelled or failed half-way: the pool's workers must not outlive this.
                await self._pool.close()
                raise
            if self._closed:  # close() ran while it opened (and closed it)
                await self._pool.close()
                self._check_open()
            self._opened = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the {self._owner} is closed")

    async def close(self) -> None:
        """Give kept connections back, and close the pool if it was opened from a DSN.

        Calls after this raise :class:`RuntimeError`. Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = self._sweep_loop = None
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await self._give_back(conn)
        if self._returning:
            await asyncio.gather(*self._returning, return_exceptions=True)
        if self._dsn is not None:
            # Also a pool still opening (its opener then fails): a pool never opened is
            # closed already, and closing it does nothing.
            await self._pool.close()

    def connection(self) -> _Loan:
        """``async with`` this for an autocommit connection, lent for the block's duration."""
        return _Loan(self)

    async def execute(
        self, conn: AsyncConnection[Any], query: bytes, params: Any = None
    ) -> AsyncCursor[Any]:
        """Execute ``query`` on a lent connection, with this statement's own cursor."""
        cursors = self._cursors.get(conn)
        if cursors is None:
            cursors = self._cursors[conn] = {}
        cur = cursors.get(query)
        if cur is None:
            cur = cursors[query] = conn.cursor()
        await cur.execute(query, params)
        return cur

    async def take(self) -> AsyncConnection[Any]:
        """An autocommit connection; give it back with :meth:`give` (in a ``finally``).

        Raises:
            RuntimeError: :meth:`close` was called.

        """
        self._check_open()
        if not self._opened:
            await self._open()
        idle = self._idle
        while idle:
            kept = idle.pop()[0]  # the most recently used
            if not kept.closed and not self._pool.closed:
                return kept
            await self._give_back(kept)  # a closed pool closes it
        conn: AsyncConnection[Any] = await self._pool.getconn()
        was_autocommit = conn.autocommit
        if not was_autocommit:
            try:
                await conn.set_autocommit(True)
            except BaseException:
                await self._pool.putconn(conn)
                raise
        self._taken[conn] = (monotonic(), was_autocommit)
        return conn

    async def give(self, conn: AsyncConnection[Any]) -> None:
        """Take back a connection :meth:`take` lent: keep it a moment, or return it."""
        now = monotonic()
        if (
            not self._keep
            or self._closed
            or conn.closed
            or conn.pgconn.transaction_status != _IDLE
            or now - self._taken[conn][0] >= _KEEP_AT_MOST_SECONDS
            or self._pool.closed
            or self._pool.get_stats().get("requests_waiting")
        ):
            await self._give_back(conn)
            return
        self._idle.append((conn, now))
        loop = asyncio.get_running_loop()
        if self._sweep is None or self._sweep_loop is not loop:
            self._sweep = loop.call_later(_KEEP_IDLE_SECONDS, self._return_idle)
            self._sweep_loop = loop

    async def _give_back(self, conn: AsyncConnection[Any]) -> None:
        _, was_autocommit = self._taken.pop(conn, (0.0, True))
        self._cursors.pop(conn, None)
        try:
            # A connection left mid-query (cancelled) is discarded by the pool anyway.
            if not was_autocommit and not conn.closed and conn.pgconn.transaction_status == _IDLE:
                await conn.set_autocommit(False)
        finally:
            await self._pool.putconn(conn)

    def _return_idle(self) -> None:
        """Give back the connections idle for long enough; look again for the others."""
        self._sweep = self._sweep_loop = None
        now = monotonic()
        idle = self._idle
        stale = 0
        while stale < len(idle) and now - idle[stale][1] >= _KEEP_IDLE_SECONDS:
            stale += 1
        for conn, _ in idle[:stale]:
            task = asyncio.get_running_loop().create_task(self._give_back(conn))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)
        del idle[:stale]
        if idle:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(idle[0][1] + _KEEP_IDLE_SECONDS - now, self._return_idle)
            self._sweep_loop = loop


_TARGET_KEYS = ("host", "hostaddr", "port", "dbname", "service")


def _target(pool: AsyncConnectionPool[Any]) -> tuple[object, ...] | None:
    """Where a pool's connections go, from its connection string (None: cannot tell)."""
    conninfo, kwargs = pool.conninfo, pool.kwargs or {}
    if not isinstance(conninfo, str) or not isinstance(kwargs, dict):
        return None  # computed per connection: they may go anywhere
    try:
        info = conninfo_to_dict(conninfo)
    except ProgrammingError:
        return None
    info.update({k: v for k, v in kwargs.items() if k in (*_TARGET_KEYS, "user")})
    info.setdefault("dbname", info.get("user"))  # libpq's default database
    return tuple(str(info[k]) if info.get(k) is not None else None for k in _TARGET_KEYS)


class _Loan:
    __slots__ = ("_conn", "_conns")

    def __init__(self, conns: AutocommitConnections) -> None:
        self._conns = conns

    async def __aenter__(self) -> AsyncConnection[Any]:
        self._conn = await self._conns.take()
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._conns.give(self._conn)
        schema = self._conns._schema
        if schema is not None and isinstance(exc, UndefinedTable | UndefinedFunction):
            # The usual cause: the schema was never created. Say so, and how to fix it.
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise type(exc)(
                f"{self._conns._owner}: schema {schema!r} is missing its tables or functions "
                f"({first_line}); create them with "
                f"`await luno_wf_postgres.migrate(pool_or_dsn, schema={schema!r})`"
            ) from exc


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` if the current task has an unhandled cancellation request.

    On Python 3.11, ``asyncio.wait_for`` (which psycopg_pool uses while waiting for a free
    connection) can swallow a cancellation that arrives as its wait completes, leaving the
    task's cancellation count raised but the task running. A waiting loop that carried on
    then would never stop; calling this before each wait turns the lost cancellation back
    into ``CancelledError``.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended.

    A cancellation that arrives just as a notification does can be swallowed inside
    psycopg's wait on Python 3.11 (``asyncio.wait_for``), leaving the task waiting for the
    next one: the task is cancelled again until it ends.
    """
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)


class Closing:
    """``async with`` for an adapter: the block's end calls its ``close()``."""

    async def close(self) -> None:
        """Release what the adapter holds; safe twice."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class PoolAdapter(Closing):
    """What the pool-based stores share: their connections, ``close()`` and ``async with``."""

    _conns: AutocommitConnections

    async def close(self) -> None:
        """Give kept connections back to the pool (closing the pool if opened from a DSN).

        Calls after this raise :class:`RuntimeError`. Safe to call twice.
        """
        await self._conns.close()
