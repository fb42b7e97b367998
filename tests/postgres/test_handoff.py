"""A record store's write hands its event straight to a waiting receiver of its process.

The write claims the event for the receiver in its own statement (the schema's
``hand_off``), so the receiver starts on it without a claim of its own, and with the
record. It does so only when the receiver's name has had every earlier event of the topic
handed out, so nothing is skipped or reordered; writes of two processes at once lose and
repeat nothing; an event handed to a receiver that closed meanwhile goes back at once.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from luno_wf_postgres import PostgresReceiver, PostgresRecordStore, PostgresStreamer
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import Event, Meta, Record, RunState, topic

pytestmark = pytest.mark.postgres

NAME = "handoff"
TOPIC = topic(NAME, 2)  # the topic of status 2, which the records below move to
SLOW = timedelta(seconds=30)  # no receiver finds anything by polling within a test

Pair = tuple[PostgresStreamer, PostgresRecordStore]


def record(run_id: str, version: int, status: int = 2) -> Record:
    now = datetime.now(UTC)
    return Record(
        workflow_name=NAME,
        foreign_id=f"f-{run_id}",
        run_id=run_id,
        run_state=RunState.RUNNING,
        status=status,
        object=b"{}",
        created_at=now,
        updated_at=now,
        meta=Meta(version=version),
    )


async def new_run(store: PostgresRecordStore) -> str:
    """A run stored at version 1, status 1 (a topic nobody here receives)."""
    run_id = uuid.uuid4().hex
    await store.store(record(run_id, 1, status=1))
    return run_id


@pytest.fixture
async def make_pair(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> AsyncIterator[Callable[[], Awaitable[Pair]]]:
    """Paired streamers and stores, one pair per "process", on the test's pool."""
    made: list[Pair] = []

    async def make() -> Pair:
        streamer = PostgresStreamer(pg_pool, schema=pg_schema, poll_frequency=SLOW)
        store = PostgresRecordStore(pg_pool, schema=pg_schema)
        assert store.publishes_events(NAME, streamer)
        made.append((streamer, store))
        return streamer, store

    yield make
    for streamer, store in made:
        await streamer.close()
        await store.close()


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The limits of every claim receivers make from now on."""
    made: list[int] = []
    original = PostgresReceiver._claim

    async def counted(self: PostgresReceiver, limit: int) -> int:
        made.append(limit)
        return await original(self, limit)

    monkeypatch.setattr(PostgresReceiver, "_claim", counted)
    return made


async def fetch(pool: AsyncConnectionPool[Any], query: str, schema: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql.SQL(query).format(s=sql.Identifier(schema)))
        return [tuple(row) for row in await cur.fetchall()]


async def test_a_waiting_receiver_takes_the_event_and_record_from_the_write(
    make_pair: Callable[[], Awaitable[Pair]],
    pg_pool: AsyncConnectionPool[Any],
    pg_schema: str,
    claims: list[int],
) -> None:
    streamer, store = await make_pair()
    receiver = await streamer.new_receiver(TOPIC, "step")
    run_id = await new_run(store)
    waiting = asyncio.create_task(receiver.recv())
    await asyncio.sleep(0.2)  # its first claim found nothing: it waits
    assert not waiting.done()
    claims.clear()

    written = record(run_id, 2)
    await store.store(written)
    event, ack = await asyncio.wait_for(waiting, 5)

    assert (event.foreign_id, event.type, event.headers["topic"]) == (run_id, 2, TOPIC)
    assert claims == []  # the write claimed it: the receiver made no claim of its own
    rows = await fetch(pg_pool, "SELECT event_id, owner FROM {s}.claims", pg_schema)
    assert rows == [(event.id, receiver._owner)]
    rows = await fetch(pg_pool, "SELECT position FROM {s}.cursors WHERE name = 'step'", pg_schema)
    assert rows == [(event.id,)]
    found = await store.lookup_many([run_id])
    assert found[run_id] is written  # handed over with the event, not read back
    await ack()
    await receiver.close()  # records the ack
    assert await fetch(pg_pool, "SELECT event_id FROM {s}.claims", pg_schema) == []


async def test_a_write_never_hands_over_past_an_event_not_yet_claimed(
    make_pair: Callable[[], Awaitable[Pair]],
) -> None:
    """Another process's event waits unclaimed: the write leaves its own to be claimed
    after it, so the receiver gets both, in order."""
    here, store = await make_pair()
    elsewhere, _ = await make_pair()
    receiver = await here.new_receiver(TOPIC, "step")
    run_id = await new_run(store)
    sender = await elsewhere.new_sender(TOPIC)
    await sender.send("from-elsewhere", 2, {"topic": TOPIC})

    await store.store(record(run_id, 2))  # the receiver is idle: a candidate

    got = []
    for _ in range(2):
        event, ack = await asyncio.wait_for(receiver.recv(), 5)
        await ack()
        got.append(event.foreign_id)
    assert got == ["from-elsewhere", run_id]
    assert receiver._handed == 0
    await receiver.close()


async def test_writes_of_two_processes_at_once_lose_and_repeat_nothing(
    make_pair: Callable[[], Awaitable[Pair]],
    pg_pool: AsyncConnectionPool[Any],
    pg_schema: str,
) -> None:
    """Two processes write runs to one topic while a receiver of one name in each takes
    them, by hand-over and by claim: every event arrives exactly once."""
    pairs = [await make_pair(), await make_pair()]
    receivers = [await streamer.new_receiver(TOPIC, "step") for streamer, _ in pairs]
    runs = [await new_run(pairs[i % 2][1]) for i in range(200)]
    got: list[Event] = []
    done = asyncio.Event()

    async def take(receiver: PostgresReceiver) -> None:
        while True:
            event, ack = await receiver.recv()
            await asyncio.sleep(0)  # a step
            await ack()
            got.append(event)
            if len(got) == len(runs):
                done.set()

    async def write(i: int, run_id: str) -> None:
        await pairs[i % 2][1].store(record(run_id, 2))

    async with asyncio.TaskGroup() as tg:
        takers = [tg.create_task(take(r)) for r in receivers]
        for start in range(0, len(runs), 10):  # ten at a time, from both processes
            await asyncio.gather(*(write(i, runs[i]) for i in range(start, start + 10)))
            await asyncio.sleep(0.005 * (start % 3))  # sometimes idle receivers, sometimes not
        await asyncio.wait_for(done.wait(), 20)
        await asyncio.sleep(0.2)  # nothing more arrives
        for task in takers:
            task.cancel()

    assert sorted(e.foreign_id for e in got) == sorted(runs)  # each once
    assert len({e.id for e in got}) == len(runs)
    assert sum(r._handed for r in receivers) > 0  # the hand-over was exercised
    for receiver in receivers:
        await receiver.close()
    assert await fetch(pg_pool, "SELECT event_id FROM {s}.claims", pg_schema) == []


async def test_an_event_handed_to_a_receiver_that_closed_goes_back_at_once(
    make_pair: Callable[[], Awaitable[Pair]],
    pg_pool: AsyncConnectionPool[Any],
    pg_schema: str,
) -> None:
    streamer, store = await make_pair()
    receiver = await streamer.new_receiver(TOPIC, "step")
    run_id = await new_run(store)
    lock = sql.SQL("SELECT {}(hashtextextended({} || {}, 0))")
    key = (sql.Literal(f"{pg_schema}.events:"), sql.Literal(TOPIC))
    async with pg_pool.connection() as holder:
        # Hold the topic's lock: the write, which chose the receiver, waits for it.
        await holder.execute(lock.format(sql.Identifier("pg_advisory_lock"), *key))
        writing = asyncio.create_task(store.store(record(run_id, 2)))
        await asyncio.sleep(0.3)
        assert not writing.done()
        await receiver.close()
        await holder.execute(lock.format(sql.Identifier("pg_advisory_unlock"), *key))
    await asyncio.wait_for(writing, 5)
    await asyncio.gather(*streamer._releasing)
    # The write handed it over (claimed for the closed receiver), which gave it back.
    query = "SELECT owner, lease_until = '-infinity' FROM {s}.claims"
    assert await fetch(pg_pool, query, pg_schema) == [(receiver._owner, True)]

    second = await streamer.new_receiver(TOPIC, "step")
    event, ack = await asyncio.wait_for(second.recv(), 5)  # not after the 30 s lease
    assert event.foreign_id == run_id
    await ack()
    await second.close()


async def test_a_hand_over_reads_only_the_events_after_the_cursor(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    """However many events the topic holds, ``hand_off`` looks only between the cursor and
    the new event (an index range with both bounds): its statements read a few buffers.

    As on a long-lived connection: the function's plans are made while the topic is small
    (and kept), then the topic grows to thousands of events before the cursor.
    """
    s = sql.Identifier(pg_schema)
    send = sql.SQL(
        "SELECT {}.send_events(%s, array_fill('f'::text, ARRAY[%s]),"
        " array_fill(2::bigint, ARRAY[%s]), array_fill('{{}}'::jsonb, ARRAY[%s]), now())"
    ).format(s)
    hand_off = sql.SQL(
        "SELECT {s}.hand_off(%s, 'step', 'me', interval '30 seconds',"
        " (SELECT max(id) FROM {s}.events))"
    ).format(s=s)
    async with pg_pool.connection() as conn:
        await conn.set_autocommit(True)
        await conn.execute(
            sql.SQL("INSERT INTO {}.cursors (topic, name, position) VALUES (%s, 'step', 0)").format(
                s
            ),
            (TOPIC,),
        )
        for _ in range(8):  # past plpgsql's switch to generic plans
            await conn.execute(send, (TOPIC, 1, 1, 1))
            assert await (await conn.execute(hand_off, (TOPIC,))).fetchone() == (True,)
        await conn.execute(send, (TOPIC, 3000, 3000, 3000))
        await conn.execute(
            sql.SQL("UPDATE {s}.cursors SET position = (SELECT max(id) FROM {s}.events)").format(
                s=s
            )
        )
        await conn.execute(send, (TOPIC, 1, 1, 1))
        plans: list[str] = []
        conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_buffers = on",
            "SET auto_explain.log_nested_statements = on",
            "SET client_min_messages = log",
        ):
            await conn.execute(setting)
        assert await (await conn.execute(hand_off, (TOPIC,))).fetchone() == (True,)
        await conn.execute("RESET ALL")
    looks = [plan for plan in plans if ".events e" in plan and "hand_off" not in plan]
    assert looks, plans
    for plan in looks:
        buffers = [int(n) for n in re.findall(r"shared hit=(\d+)", plan)]
        assert max(buffers, default=0) < 20, plan  # not the 3,000 events before the cursor
