"""Adapters keep the pool's connections between calls only briefly, and give them back intact."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from luno_wf_postgres import PostgresRecordStore, migrate
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, AsyncNullConnectionPool

from luno_wf import Meta, Record, RunState
from luno_wf.errors import RecordNotFound

pytestmark = pytest.mark.postgres

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def make_record() -> Record:
    return Record(
        workflow_name="w",
        foreign_id=str(uuid.uuid4()),
        run_id=str(uuid.uuid4()),
        run_state=RunState.INITIATED,
        status=1,
        object=b"{}",
        created_at=NOW,
        updated_at=NOW,
        meta=Meta(version=1),
    )


async def wait_until_available(pool: AsyncConnectionPool[Any], count: int) -> float:
    started = time.monotonic()
    while pool.get_stats()["pool_available"] < count:
        assert time.monotonic() - started < 5, pool.get_stats()
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def test_connections_go_back_to_the_pool_in_its_mode_when_idle(
    postgres_dsn: str, pg_schema: str
) -> None:
    async with AsyncConnectionPool(postgres_dsn, min_size=2, max_size=2, open=False) as pool:
        await pool.wait()
        await migrate(pool, schema=pg_schema)
        store = PostgresRecordStore(pool, schema=pg_schema)
        record = make_record()
        await store.store(record)
        await asyncio.gather(*(store.lookup(record.run_id) for _ in range(4)))
        assert pool.get_stats()["pool_available"] < 2  # kept for the next call
        await wait_until_available(pool, 2)
        for _ in range(2):
            async with pool.connection() as conn:
                assert not conn.autocommit  # the pool's own mode again
                assert conn.info.transaction_status == TransactionStatus.IDLE


async def test_a_waiting_pool_client_gets_a_kept_connection_at_once(
    postgres_dsn: str, pg_schema: str
) -> None:
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=1, open=False) as pool:
        await pool.wait()
        await migrate(pool, schema=pg_schema)
        store = PostgresRecordStore(pool, schema=pg_schema)
        record = make_record()
        await store.store(record)
        stop = asyncio.Event()

        async def busy() -> None:  # never idle: only a waiting client makes it give back
            while not stop.is_set():
                await store.lookup(record.run_id)

        task = asyncio.create_task(busy())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        async with pool.connection(timeout=5) as conn:
            await conn.execute("SELECT 1")
            waited = time.monotonic() - started
        stop.set()
        await task
        assert waited < 0.5  # not the second the store may otherwise keep it


async def test_only_idle_connections_are_kept(postgres_dsn: str, pg_schema: str) -> None:
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=2, open=False) as pool:
        await pool.wait()
        await migrate(pool, schema=pg_schema)
        store = PostgresRecordStore(pool, schema=pg_schema)
        conns = store._conns
        # Cancelled mid-query: kept only if the cancellation left it idle.
        conn = await conns.take()
        query = asyncio.create_task(conn.execute("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.1)
        query.cancel()
        with pytest.raises(asyncio.CancelledError):
            await query
        await conns.give(conn)
        for kept, _ in conns._idle:
            assert kept.pgconn.transaction_status == TransactionStatus.IDLE
        with pytest.raises(RecordNotFound):
            await store.lookup(str(uuid.uuid4()))
        # Left inside a transaction: straight back to the pool, which rolls it back.
        conn = await conns.take()
        await conn.execute("BEGIN")
        await conns.give(conn)
        assert all(kept is not conn for kept, _ in conns._idle)
        with pytest.raises(RecordNotFound):
            await store.lookup(str(uuid.uuid4()))


async def test_a_closed_pool_closes_kept_connections(postgres_dsn: str, pg_schema: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        postgres_dsn, min_size=1, max_size=2, open=False
    )
    await pool.open(wait=True)
    await migrate(pool, schema=pg_schema)
    store = PostgresRecordStore(pool, schema=pg_schema)
    with pytest.raises(RecordNotFound):
        await store.lookup(str(uuid.uuid4()))
    kept = [conn for conn, _ in store._conns._idle]
    assert kept
    await pool.close()
    await asyncio.sleep(0.2)
    assert all(conn.closed for conn in kept)
    assert store._conns._idle == []


async def test_a_null_pool_is_used_call_by_call(postgres_dsn: str, pg_schema: str) -> None:
    async with AsyncNullConnectionPool(postgres_dsn, open=False) as pool:
        await migrate(pool, schema=pg_schema)
        store = PostgresRecordStore(pool, schema=pg_schema)
        record = make_record()
        await store.store(record)
        assert (await store.lookup(record.run_id)).run_id == record.run_id
        assert store._conns._idle == []


async def test_a_statement_reuses_its_cursor_after_a_failure(
    postgres_dsn: str, pg_schema: str
) -> None:
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=1, open=False) as pool:
        await pool.wait()
        conns = PostgresRecordStore(pool, schema=pg_schema)._conns
        query = b"SELECT 10 / %s"
        async with conns.connection() as conn:
            with pytest.raises(psycopg.errors.DivisionByZero):
                await conns.execute(conn, query, (0,))
            first = await conns.execute(conn, query, (2,))
            assert await first.fetchone() == (5,)
            again = await conns.execute(conn, query, (5,))
            assert again is first
            assert await again.fetchall() == [(2,)]
            other = await conns.execute(conn, b"SELECT %s::text", ("x",))
            assert other is not first
            assert await other.fetchone() == ("x",)
