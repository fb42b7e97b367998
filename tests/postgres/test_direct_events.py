"""A workflow whose record store writes its events straight to the PostgreSQL streamer.

The pairing (same database and schema), what ``Workflow.states()`` says, that the outbox
publisher still sweeps up rows other writers leave, that a process that only triggers
runs writes their events directly too, and that new runs written at once go together.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
from luno_wf_postgres import PostgresRecordStore, PostgresRoleScheduler, PostgresStreamer
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import Builder, Run, Workflow
from luno_wf.memory import MemStreamer

pytestmark = pytest.mark.postgres


class Status(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    DONE = 2


@attrs.define
class Job:
    n: int = 0


async def finish(r: Run[Job, Status]) -> Status:
    return Status.DONE


def workflow(
    streamer: Any, store: PostgresRecordStore, dsn: str, schema: str, name: str = "direct"
) -> Workflow[Job, Status]:
    b = Builder(name, Job, Status)
    b.add_step(Status.CREATED, finish, Status.DONE)
    scheduler = PostgresRoleScheduler(
        dsn, namespace=schema, poll_interval=timedelta(milliseconds=100)
    )
    return b.build(streamer, store, scheduler)


async def count(pool: AsyncConnectionPool[Any], schema: str, table: str) -> int:
    async with pool.connection() as conn:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return int(row[0])


async def test_pairing_needs_the_same_database_and_schema(
    postgres_dsn: str, pg_schema: str
) -> None:
    """Same pool or same DSN (in any form) and schema: paired; anything else: the outbox."""
    streamer = PostgresStreamer(postgres_dsn, schema=pg_schema)
    stores = {
        True: [PostgresRecordStore(postgres_dsn, schema=pg_schema)],
        False: [
            PostgresRecordStore(postgres_dsn, schema="elsewhere"),
            PostgresRecordStore(f"{postgres_dsn} dbname=other", schema=pg_schema),
            PostgresRecordStore(postgres_dsn, schema=pg_schema, direct_events=False),
        ],
    }
    if "host=127.0.0.1 port=5432 user=postgres dbname=postgres" in postgres_dsn:
        url = "postgresql://postgres@127.0.0.1:5432/postgres?connect_timeout=3"
        stores[True].append(PostgresRecordStore(url, schema=pg_schema))
    try:
        for paired, group in stores.items():
            for store in group:
                assert store.publishes_events("a", streamer) is paired, store
        assert not stores[True][0].publishes_events("b", MemStreamer())
    finally:
        for group in stores.values():
            for store in group:
                await store.close()
        await streamer.close()


async def test_runs_complete_with_no_outbox_row_and_states_say_so(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> None:
    streamer = PostgresStreamer(pg_pool, schema=pg_schema)
    store = PostgresRecordStore(pg_pool, schema=pg_schema)
    wf = workflow(streamer, store, postgres_dsn, pg_schema)
    try:
        async with wf:
            assert "outbox-sweeper" in wf.states()
            assert "outbox-consumer" not in wf.states()
            ids = [await wf.trigger(f"job-{i}", initial_value=Job(n=i)) for i in range(20)]
            for i, run_id in enumerate(ids):
                await wf.await_status(f"job-{i}", run_id, Status.DONE)
        assert await count(pg_pool, pg_schema, "outbox") == 0
        assert await count(pg_pool, pg_schema, "events") >= 40  # CREATED and completion
    finally:
        await streamer.close()
        await store.close()


async def test_the_sweeper_publishes_rows_other_writers_leave(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> None:
    """A store with direct events off (an older version, a tool) writes outbox rows: the
    workflow's sweeper publishes them and the runs move on."""
    streamer = PostgresStreamer(pg_pool, schema=pg_schema)
    store = PostgresRecordStore(pg_pool, schema=pg_schema)
    plain = PostgresRecordStore(pg_pool, schema=pg_schema, direct_events=False)
    wf = workflow(streamer, store, postgres_dsn, pg_schema)
    legacy = workflow(streamer, plain, postgres_dsn, pg_schema)  # same name, outbox writes
    try:
        async with wf:
            run_id = await legacy.trigger("from-elsewhere", initial_value=Job())
            assert await count(pg_pool, pg_schema, "outbox") == 1
            run = await wf.await_status("from-elsewhere", run_id, Status.DONE)
            assert run.status == Status.DONE
            for _ in range(50):
                if await count(pg_pool, pg_schema, "outbox") == 0:
                    break
                await asyncio.sleep(0.1)
            assert await count(pg_pool, pg_schema, "outbox") == 0
    finally:
        await streamer.close()
        await store.close()
        await plain.close()


@pytest.fixture
async def paired(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> AsyncIterator[Workflow[Job, Status]]:
    """A workflow (not run) on a paired store and streamer sharing the test's pool."""
    streamer = PostgresStreamer(pg_pool, schema=pg_schema)
    store = PostgresRecordStore(pg_pool, schema=pg_schema)
    try:
        yield workflow(streamer, store, postgres_dsn, pg_schema)
    finally:
        await streamer.close()
        await store.close()


async def test_a_process_that_only_triggers_writes_events_directly(
    paired: Workflow[Job, Status], pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    """The store learns at build time: a workflow never run writes events, not outbox rows."""
    await paired.trigger("web-request", initial_value=Job())
    assert await count(pg_pool, pg_schema, "outbox") == 0
    assert await count(pg_pool, pg_schema, "events") == 1


async def test_new_runs_written_at_once_go_together(
    paired: Workflow[Job, Status], pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    """Concurrent triggers: each gets its own outcome, in-progress ones included."""
    names = [f"job-{i % 30}" for i in range(40)]  # ten foreign ids twice
    outcomes = await asyncio.gather(
        *(paired.trigger(name, initial_value=Job()) for name in names), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 10, refused
    assert all(type(o).__name__ == "WorkflowInProgress" for o in refused), refused
    assert await count(pg_pool, pg_schema, "records") == 30
    assert await count(pg_pool, pg_schema, "events") == 30
    assert await count(pg_pool, pg_schema, "history") == 30


async def test_a_pool_that_prepares_every_statement(
    pg_schema: str, postgres_dsn: str, pg_pool: AsyncConnectionPool[Any]
) -> None:
    """Every statement is one command (a prepared statement holds one): the listener of a
    pool with ``prepare_threshold=0`` hears another process's notifications, and a
    workflow runs on it."""
    preparing: AsyncConnectionPool[Any] = AsyncConnectionPool(
        postgres_dsn, min_size=1, max_size=6, kwargs={"prepare_threshold": 0}, open=False
    )
    await preparing.open(wait=True)
    slow = timedelta(seconds=30)
    listening = PostgresStreamer(preparing, schema=pg_schema, poll_frequency=slow)
    sending = PostgresStreamer(pg_pool, schema=pg_schema, poll_frequency=slow)
    store = PostgresRecordStore(preparing, schema=pg_schema)
    try:
        receiver = await listening.new_receiver("prepared", "prepared")
        waiting = asyncio.create_task(receiver.recv())
        await asyncio.sleep(0.3)  # its claim found nothing: it waits to be woken
        assert not waiting.done()
        sender = await sending.new_sender("prepared")
        await sender.send("x", 1, {})
        async with asyncio.timeout(5):  # well within the 30 s poll
            event, _ = await waiting
        assert event.foreign_id == "x"
        await receiver.close()

        wf = workflow(listening, store, postgres_dsn, pg_schema, name="prepared-wf")
        async with wf:
            run_id = await wf.trigger("p", initial_value=Job())
            await wf.await_status("p", run_id, Status.DONE)
    finally:
        await listening.close()
        await sending.close()
        await store.close()
        await preparing.close()


async def test_a_trigger_only_process_on_its_own_dsn_pools_closes_cleanly(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> None:
    """As a web process builds it: adapters from the DSN, a trigger, close. The streamer's
    pool is first opened by the notification of that trigger's event, in a task of its
    own, maybe still opening at close: nothing may outlive close (the loop would hang)."""
    for i in range(5):
        streamer = PostgresStreamer(postgres_dsn, schema=pg_schema)
        store = PostgresRecordStore(postgres_dsn, schema=pg_schema)
        wf = workflow(streamer, store, postgres_dsn, pg_schema, name=f"web-{i}")
        await wf.trigger("web-request", initial_value=Job())
        await streamer.close()
        await store.close()
        pools = (streamer._conns._pool, store._conns._pool)
        assert all(pool.closed for pool in pools)
        await asyncio.sleep(0.05)
        running = [
            t.get_name()
            for t in asyncio.all_tasks()
            if any(t.get_name().startswith(f"{pool.name}-") for pool in pools)
        ]
        assert running == []
    assert await count(pg_pool, pg_schema, "events") == 5
