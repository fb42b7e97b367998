"""Step shards on PostgreSQL take only their own events (a ShardedStreamer).

A step with ``parallel_count`` above 1 opens one receiver name per shard; the streamer
claims for each only the events of its shard, and a write hands its event only to the
waiting receiver of the event's shard.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from datetime import timedelta
from typing import Any

import attrs
import pytest
from luno_wf_postgres import PostgresRecordStore, PostgresRoleScheduler, PostgresStreamer
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import Builder, Run, topic

from .test_handoff import NAME, TOPIC, new_run, record

pytestmark = pytest.mark.postgres


class Status(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    DONE = 2


@attrs.define
class Job:
    n: int = 0


async def test_a_sharded_step_claims_only_its_shards_events(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> None:
    ran: Counter[str] = Counter()

    async def finish(r: Run[Job, Status]) -> Status:
        ran[r.run_id] += 1
        return Status.DONE

    b = Builder("sharded", Job, Status)
    b.add_step(Status.CREATED, finish, Status.DONE, parallel_count=3)
    streamer = PostgresStreamer(pg_pool, schema=pg_schema)
    store = PostgresRecordStore(pg_pool, schema=pg_schema)
    scheduler = PostgresRoleScheduler(
        postgres_dsn, namespace=pg_schema, poll_interval=timedelta(milliseconds=100)
    )
    wf = b.build(streamer, store, scheduler)
    try:
        async with wf:
            ids = [await wf.trigger(f"job-{i}", initial_value=Job(n=i)) for i in range(60)]
            for i, run_id in enumerate(ids):
                await wf.await_status(
                    f"job-{i}", run_id, Status.DONE, timeout=timedelta(seconds=20)
                )
    finally:
        await streamer.close()
        await store.close()
        await scheduler.close()

    assert sorted(ran) == sorted(ids) and set(ran.values()) == {1}
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT name, shard, shards FROM {}.cursors WHERE topic = %s").format(
                sql.Identifier(pg_schema)
            ),
            (topic("sharded", Status.CREATED),),
        )
        cursors = sorted(tuple(row) for row in await cur.fetchall())
    assert [(shard, shards) for _, shard, shards in cursors] == [(1, 3), (2, 3), (3, 3)]
    assert [name.endswith(f"{i}-of-3") for i, (name, _, _) in enumerate(cursors, 1)] == [True] * 3


async def test_a_write_hands_its_event_only_to_the_receiver_of_its_shard(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    streamer = PostgresStreamer(pg_pool, schema=pg_schema, poll_frequency=timedelta(seconds=30))
    store = PostgresRecordStore(pg_pool, schema=pg_schema)
    try:
        assert store.publishes_events(NAME, streamer)
        receivers = [
            await streamer.new_shard_receiver(TOPIC, f"step-{i}-of-2", shard=i, total=2)
            for i in (1, 2)
        ]
        run_id = await new_run(store)
        waiting = [asyncio.create_task(r.recv()) for r in receivers]
        await asyncio.sleep(0.2)  # both claimed nothing and wait
        await store.store(record(run_id, 2))
        done, pending = await asyncio.wait(waiting, timeout=5, return_when="FIRST_COMPLETED")
        await asyncio.sleep(0.3)  # the other shard's receiver, woken, claims nothing
        assert len(done) == 1 and not any(t.done() for t in pending)
        (event, ack), shard = next(iter(done)).result(), waiting.index(next(iter(done))) + 1
        assert event.foreign_id == run_id and event.id % 2 == shard - 1
        assert receivers[shard - 1]._handed == 1  # handed over by the write, not claimed
        await ack()
        for task in pending:
            task.cancel()
        for receiver in receivers:
            await receiver.close()
    finally:
        await streamer.close()
        await store.close()
