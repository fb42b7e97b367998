"""Borrowing pool connections for single-statement autocommit work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

__all__ = ["autocommit"]


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
