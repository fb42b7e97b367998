"""Rows luno_wf never writes, on PostgreSQL: each is contained, the consumers go on."""

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

from luno_wf import Builder, DeadLetter, Run, RunState, Workflow, replay_dead_letter
from luno_wf.errors import CorruptRecord

pytestmark = pytest.mark.postgres

FAST = timedelta(milliseconds=20)


class Status(enum.IntEnum):
    UNKNOWN = 0
    STARTED = 1
    DONE = 2


@attrs.define
class Obj:
    pass


async def done(r: Run[Obj, Status]) -> Status:
    return Status.DONE


class Setup:
    def __init__(self, pool: AsyncConnectionPool[Any], schema: str, dsn: str) -> None:
        self.pool = pool
        self.schema = schema
        self.streamer = PostgresStreamer(pool, schema=schema)
        self.store = PostgresRecordStore(pool, schema=schema)
        self.scheduler = PostgresRoleScheduler(dsn, namespace=schema)

    def build(self) -> Workflow[Obj, Status]:
        b = Builder("poison", Obj, Status)
        b.add_step(Status.STARTED, done, Status.DONE, err_backoff=FAST)
        return b.build(self.streamer, self.store, self.scheduler, pause_retry=None)

    async def execute(self, query: str, *params: Any) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                sql.SQL(query).format(s=sql.Identifier(self.schema)),
                params,
            )

    async def dead_letters(self) -> list[DeadLetter]:
        async with asyncio.timeout(20):
            while not (letters := await self.store.list_dead_letters("poison")):
                await asyncio.sleep(0.05)
        return letters


@pytest.fixture
async def setup(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> AsyncIterator[Setup]:
    found = Setup(pg_pool, pg_schema, postgres_dsn)
    yield found
    await found.streamer.close()
    await found.scheduler.close()


async def completes(wf: Workflow[Obj, Status], count: int) -> None:
    runs = [(f"ok-{i}", await wf.trigger(f"ok-{i}")) for i in range(count)]
    for foreign_id, run_id in runs:
        await wf.await_status(foreign_id, run_id, Status.DONE, timeout=timedelta(seconds=20))


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        ("UPDATE {s}.records SET run_state = 99 WHERE run_id = %s", "99 is not a valid RunState"),
        ("UPDATE {s}.records SET meta = '[1, 2]'::jsonb WHERE run_id = %s", "meta is not"),
    ],
    ids=["run-state-out-of-range", "meta-not-an-object"],
)
async def test_an_unreadable_record_row_is_contained(setup: Setup, damage: str, what: str) -> None:
    wf = setup.build()
    bad = await wf.trigger("bad")  # before the workers run: its event waits in the outbox
    await setup.execute(damage, bad)
    with pytest.raises(CorruptRecord, match=what):
        await setup.store.lookup(bad)
    assert bad not in await setup.store.lookup_many([bad])
    async with wf:
        await completes(wf, 5)  # the same batch and consumer as the bad event's
        (letter,) = await setup.dead_letters()
        assert letter.event.foreign_id == bad and what in letter.reason
        # Fixed by hand, then replayed: the run moves on.
        await setup.execute(
            "UPDATE {s}.records SET run_state = 1, meta = '{{}}'::jsonb WHERE run_id = %s", bad
        )
        await replay_dead_letter(setup.store, setup.streamer, letter)
        run = await wf.await_status("bad", bad, Status.DONE, timeout=timedelta(seconds=20))
    assert run.run_state == RunState.COMPLETED
    assert await setup.store.list_dead_letters() == []


@pytest.mark.parametrize(
    ("headers", "what"),
    [
        ("[1, 2]", "headers are not a JSON object of strings"),
        ('"text"', "headers are not a JSON object of strings"),
        ('{{"record_version": "x1"}}', "header is not a number"),
    ],
    ids=["headers-an-array", "headers-a-string", "version-not-a-number"],
)
async def test_a_malformed_event_row_is_set_aside(setup: Setup, headers: str, what: str) -> None:
    wf = setup.build()
    async with wf:
        victim = await wf.trigger("victim")
        await wf.await_status("victim", victim, Status.DONE)
        await setup.execute(
            "INSERT INTO {s}.events (topic, foreign_id, type, headers, created_at) "
            f"VALUES ('poison-1', %s, 1, '{headers}'::jsonb, now())",
            victim,
        )
        await completes(wf, 5)
        (letter,) = await setup.dead_letters()
    assert letter.event.foreign_id == victim and what in letter.reason
    assert letter.topic == "poison-1" and letter.process_name == "started-consumer-1-of-1"
