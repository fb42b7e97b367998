"""Borrowing pool connections for single-statement autocommit work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

__all__ = ["autocommit", "raise_if_cancelling"]


@asynccontextmanager
async def autocommit(pool: AsyncConnectionPool[Any]) -> AsyncIterator[AsyncConnection[Any]]:
    """A pool connection in autocommit mode, restored to the pool's own mode afterwards.

    Every adapter operation is one statement, atomic on its own; autocommit makes it one
    round trip (no separate COMMIT), whatever mode the user opened the pool with.
    """
    async with pool.connection() as conn:
        if conn.autocommit:
            yield conn
            return
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            # A connection left mid-query (cancelled) is discarded by the pool anyway.
            if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
                await conn.set_autocommit(False)


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
