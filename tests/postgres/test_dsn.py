"""Adapters on a DSN open (and close) their own pool; every adapter closes cleanly."""

from __future__ import annotations

import asyncio
import enum
import socket
import uuid
from datetime import timedelta
from typing import Any

import attrs
import psycopg
import pytest
from luno_wf_postgres import (
    PostgresRecordStore,
    PostgresRoleScheduler,
    PostgresStreamer,
    PostgresTimeoutStore,
    migrate,
)
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from luno_wf import Builder, Run

from .test_pool import NOW, make_record

pytestmark = pytest.mark.postgres


def is_closed(pool: AsyncConnectionPool[Any]) -> bool:
    return pool.closed


def closed_port_dsn() -> str:
    """A DSN for a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"


async def test_migrate_takes_a_dsn(postgres_dsn: str, pg_schema: str) -> None:
    await migrate(postgres_dsn, schema=pg_schema)
    await migrate(postgres_dsn, schema=pg_schema)  # idempotent
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (pg_schema,)
        )
        row = await cur.fetchone()
    assert row is not None and row[0] >= 6


async def test_a_store_on_a_dsn_opens_its_pool_at_first_use_and_closes_it(
    postgres_dsn: str, pg_schema: str
) -> None:
    await migrate(postgres_dsn, schema=pg_schema)
    store = PostgresRecordStore(postgres_dsn, schema=pg_schema)
    pool = store._conns._pool
    assert is_closed(pool)  # nothing opened by the constructor
    record = make_record()
    await store.store(record)
    assert not is_closed(pool)
    assert (await store.lookup(record.run_id)).run_id == record.run_id
    await store.close()
    assert pool.closed
    await store.close()  # twice is fine
    with pytest.raises(RuntimeError, match="PostgresRecordStore is closed"):
        await store.lookup(record.run_id)


async def test_pool_kwargs_shape_the_own_pool(postgres_dsn: str, pg_schema: str) -> None:
    await migrate(postgres_dsn, schema=pg_schema)
    async with PostgresTimeoutStore(
        postgres_dsn, schema=pg_schema, pool_kwargs={"min_size": 2, "max_size": 3}
    ) as timeouts:
        await timeouts.create("w", "f", "r", 1, NOW)
        assert [t.run_id for t in await timeouts.list("w")] == ["r"]
        stats = timeouts._conns._pool.get_stats()
        assert stats["pool_min"] == 2 and stats["pool_max"] == 3
    assert timeouts._conns._pool.closed


async def test_a_constructor_does_no_io_even_with_a_dead_server() -> None:
    PostgresRecordStore(closed_port_dsn())
    PostgresTimeoutStore(closed_port_dsn())
    PostgresStreamer(closed_port_dsn())
    PostgresRoleScheduler(closed_port_dsn())


async def test_a_bad_dsn_fails_the_first_call_with_the_servers_reason(
    postgres_dsn: str,
) -> None:
    store = PostgresRecordStore(closed_port_dsn())
    with pytest.raises(psycopg.OperationalError) as caught:
        await store.lookup("x")
    assert not isinstance(caught.value, PoolTimeout)
    assert "127.0.0.1" in str(caught.value)  # names where it tried to connect
    await store.close()

    missing = PostgresRecordStore(f"{postgres_dsn} dbname=no_such_db_{uuid.uuid4().hex[:8]}")
    with pytest.raises(psycopg.OperationalError, match="no_such_db"):
        await missing.lookup("x")
    await missing.close()


async def test_wrong_arguments_are_named(postgres_dsn: str) -> None:
    with pytest.raises(TypeError, match=r"PostgresRecordStore needs .* got int"):
        PostgresRecordStore(5432)  # type: ignore[arg-type]
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(postgres_dsn, open=False)
    with pytest.raises(ValueError, match="pool_kwargs applies only to a pool opened from a DSN"):
        PostgresStreamer(pool, pool_kwargs={"max_size": 4})


async def test_closing_an_adapter_gives_kept_connections_back_but_leaves_your_pool_open(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    store = PostgresRecordStore(pg_pool, schema=pg_schema)
    record = make_record()
    await store.store(record)
    await asyncio.gather(*(store.lookup(record.run_id) for _ in range(2)))
    kept = len(store._conns._idle)
    assert kept >= 1  # kept for the next call
    available = pg_pool.get_stats().get("pool_available", 0)
    await store.close()
    # Back at once, not after the keep-alive delay.
    assert pg_pool.get_stats().get("pool_available", 0) == available + kept
    assert not store._conns._idle
    assert not pg_pool.closed
    async with pg_pool.connection() as conn:
        assert not conn.autocommit  # in the pool's own mode again


async def test_a_streamer_on_a_dsn_wakes_its_receivers_and_closes(
    postgres_dsn: str, pg_schema: str
) -> None:
    await migrate(postgres_dsn, schema=pg_schema)
    streamer = PostgresStreamer(postgres_dsn, schema=pg_schema)
    receiver = await streamer.new_receiver("t", "r", poll_frequency=timedelta(seconds=30))
    waiting = asyncio.create_task(receiver.recv())
    await asyncio.sleep(0.2)  # the receiver waits on LISTEN, not on its 30 s poll
    # Sent from another process's point of view: a plain connection, so only NOTIFY wakes it.
    other = PostgresStreamer(postgres_dsn, schema=pg_schema)
    sender = await other.new_sender("t")
    await sender.send("run-1", 1, {"k": "v"})
    event, ack = await asyncio.wait_for(waiting, timeout=10)
    assert (event.foreign_id, event.headers) == ("run-1", {"k": "v"})
    await ack()
    await receiver.close()
    await streamer.close()
    await other.close()
    assert streamer._conns._pool.closed and other._conns._pool.closed
    with pytest.raises(RuntimeError, match="PostgresStreamer is closed"):
        await streamer.new_receiver("t", "r")


async def test_a_receiver_closed_after_its_streamer_does_not_fail(
    postgres_dsn: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    await migrate(postgres_dsn, schema=pg_schema)
    streamer = PostgresStreamer(postgres_dsn, schema=pg_schema)
    sender = await streamer.new_sender("t")
    await sender.send("run-1", 1, {})
    receiver = await streamer.new_receiver("t", "r")
    await receiver.recv()  # held, not acked
    await streamer.close()
    await receiver.close()
    assert "redelivered when their lease lapses" in caplog.text


async def test_a_closed_role_scheduler_refuses_new_roles(
    postgres_dsn: str, fleet_schema: str
) -> None:
    scheduler = PostgresRoleScheduler(
        postgres_dsn, namespace=f"n_{uuid.uuid4().hex[:8]}", schema=fleet_schema
    )
    async with scheduler, scheduler.await_role("a"):
        pass
    with pytest.raises(RuntimeError, match=r"closed .*'b'"):
        scheduler.await_role("b")


class Status(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    DONE = 2


@attrs.define
class Job:
    n: int = 0


async def finish(r: Run[Job, Status]) -> Status:
    r.object.n += 1
    return Status.DONE


async def test_a_workflow_on_adapters_built_from_one_dsn(postgres_dsn: str, pg_schema: str) -> None:
    await migrate(postgres_dsn, schema=pg_schema)
    streamer = PostgresStreamer(postgres_dsn, schema=pg_schema)
    store = PostgresRecordStore(postgres_dsn, schema=pg_schema)
    b = Builder("dsn", Job, Status)
    b.add_step(Status.CREATED, finish, Status.DONE)
    wf = b.build(
        streamer,
        store,
        PostgresRoleScheduler(postgres_dsn, namespace=pg_schema),
        timeout_store=PostgresTimeoutStore(postgres_dsn, schema=pg_schema),
    )
    async with wf:
        run_id = await wf.trigger("job-1", initial_value=Job(n=41))
        done = await asyncio.wait_for(wf.await_status("job-1", run_id, Status.DONE), 20)
    assert done.object.n == 42
    await streamer.close()
    await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {}.records").format(sql.Identifier(pg_schema))
        )
        assert await cur.fetchone() == (1,)


async def test_a_schema_never_migrated_is_named_with_the_fix(postgres_dsn: str) -> None:
    schema = f"never_{uuid.uuid4().hex[:8]}"
    async with PostgresRecordStore(postgres_dsn, schema=schema) as store:
        with pytest.raises(psycopg.errors.UndefinedTable) as caught:
            await store.lookup("x")
    message = str(caught.value)
    assert f"schema {schema!r}" in message and "migrate(" in message, message
    async with PostgresStreamer(postgres_dsn, schema=schema) as streamer:
        with pytest.raises(
            psycopg.errors.UndefinedTable, match=r"PostgresStreamer: schema .*[.]migrate[(]"
        ):
            await streamer.new_receiver("t", "r")


async def test_closing_a_streamer_while_its_own_pool_opens_leaves_nothing_running(
    postgres_dsn: str, pg_schema: str
) -> None:
    """The first call of an adapter on a DSN opens its pool (the streamer's notifier may
    make it in a task of its own): closing the adapter meanwhile closes the pool, so none
    of the pool's tasks outlive it and the event loop can end."""
    await migrate(postgres_dsn, schema=pg_schema)
    streamer = PostgresStreamer(postgres_dsn, schema=pg_schema)
    pool = streamer._conns._pool
    opening = asyncio.create_task(streamer._conns.pool())
    async with asyncio.timeout(5):
        while pool.closed:  # until it has started opening
            await asyncio.sleep(0.001)
    await streamer.close()
    with pytest.raises((RuntimeError, psycopg.Error)):
        await opening
    assert is_closed(pool)
    await asyncio.sleep(0.1)
    running = [
        t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(f"{pool.name}-")
    ]
    assert running == []
