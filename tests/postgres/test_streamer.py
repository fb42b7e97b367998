from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from luno_wf_postgres import PostgresReceiver, PostgresStreamer
from psycopg_pool import AsyncConnectionPool

from luno_wf import Event

pytestmark = pytest.mark.postgres

TOPIC = "test-1"


@pytest.fixture
async def streamer(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> AsyncIterator[PostgresStreamer]:
    async with PostgresStreamer(
        pg_pool, schema=pg_schema, poll_frequency=timedelta(seconds=30), batch_size=10
    ) as s:
        yield s


async def recv(receiver: PostgresReceiver, ack: bool = True) -> Event:
    event, do_ack = await asyncio.wait_for(receiver.recv(), 5)
    if ack:
        await do_ack()
    return event


async def send(streamer: PostgresStreamer, topic: str, *foreign_ids: str, type: int = 5) -> None:
    sender = await streamer.new_sender(topic)
    for foreign_id in foreign_ids:
        await sender.send(foreign_id, type, {"topic": topic})
    await sender.close()


async def test_stream_from_latest(streamer: PostgresStreamer) -> None:
    await send(streamer, TOPIC, "123", "456")
    receiver = await streamer.new_receiver(TOPIC, "my-receiver", stream_from_latest=True)
    await send(streamer, TOPIC, "789")
    event = await recv(receiver)
    assert (event.foreign_id, event.type, event.headers) == ("789", 5, {"topic": TOPIC})
    await receiver.close()
    await receiver.close()  # safe twice
    await send(streamer, TOPIC, "101")
    second = await streamer.new_receiver(TOPIC, "my-receiver", stream_from_latest=True)
    assert (await recv(second)).foreign_id == "101"  # the stored position wins
    await second.close()


async def test_names_have_independent_positions_and_ids_match(streamer: PostgresStreamer) -> None:
    a = await streamer.new_receiver(TOPIC, "a")
    b = await streamer.new_receiver(TOPIC, "b")
    await send(streamer, TOPIC, *[str(i) for i in range(25)])
    got_a = [await recv(a) for _ in range(25)]
    got_b = [await recv(b) for _ in range(25)]
    assert [e.foreign_id for e in got_a] == [str(i) for i in range(25)]
    assert [e.id for e in got_a] == [e.id for e in got_b]
    assert [e.id for e in got_a] == sorted({e.id for e in got_a})
    assert all(e.created_at.tzinfo is not None for e in got_a)
    await a.close()
    await b.close()


async def test_topics_are_isolated(streamer: PostgresStreamer) -> None:
    one = await streamer.new_receiver("topic-one", "same-name")
    two = await streamer.new_receiver("topic-two", "same-name")
    await send(streamer, "topic-two", "x")
    await send(streamer, "topic-one", "y")
    assert (await recv(one)).foreign_id == "y"
    assert (await recv(two)).foreign_id == "x"
    await one.close()
    await two.close()


async def test_unacked_events_are_redelivered_after_close(streamer: PostgresStreamer) -> None:
    receiver = await streamer.new_receiver(TOPIC, "redeliver")
    await send(streamer, TOPIC, "1", "2", "3")
    assert (await recv(receiver)).foreign_id == "1"
    assert (await recv(receiver, ack=False)).foreign_id == "2"
    await receiver.close()
    again = await streamer.new_receiver(TOPIC, "redeliver")
    assert [(await recv(again)).foreign_id for _ in range(2)] == ["2", "3"]
    await again.close()
    # Everything acked: nothing more for the name.
    last = await streamer.new_receiver(TOPIC, "redeliver")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await last.recv()
    await last.close()


async def test_dead_receivers_events_come_back_after_the_lease(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    async with PostgresStreamer(
        pg_pool, schema=pg_schema, claim_lease=timedelta(milliseconds=600)
    ) as streamer:
        dead = await streamer.new_receiver(TOPIC, "lease")
        await send(streamer, TOPIC, "1", "2")
        assert (await recv(dead, ack=False)).foreign_id == "1"
        # `dead` is never closed nor called again, as if its process had been killed.
        other = await streamer.new_receiver(TOPIC, "lease")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await other.recv()
        got = [(await recv(other)).foreign_id for _ in range(2)]
        assert got == ["1", "2"]
        await other.close()


async def test_same_name_receivers_share_without_duplicates(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    async with PostgresStreamer(pg_pool, schema=pg_schema, batch_size=7) as streamer:
        receivers = [await streamer.new_receiver(TOPIC, "group") for _ in range(3)]
        total = 300
        seen: list[int] = []
        all_seen = asyncio.Event()

        async def consume(receiver: PostgresReceiver) -> None:
            while True:
                event = await receiver.recv()
                seen.append(int(event[0].foreign_id))
                await event[1]()
                if len(seen) >= total:
                    all_seen.set()
                await asyncio.sleep(0)

        async def produce(start: int) -> None:
            sender = await streamer.new_sender(TOPIC)
            for i in range(start, total, 4):
                await sender.send(str(i), 1, {})

        consumers = [asyncio.create_task(consume(r)) for r in receivers]
        await asyncio.gather(*(produce(i) for i in range(4)))
        await asyncio.wait_for(all_seen.wait(), 20)
        await asyncio.sleep(0.2)  # a duplicate delivered late would show up here
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        assert sorted(seen) == list(range(total))
        for receiver in receivers:
            await receiver.close()


async def test_send_many_keeps_order(streamer: PostgresStreamer) -> None:
    receiver = await streamer.new_receiver(TOPIC, "many")
    sender = await streamer.new_sender(TOPIC)
    await sender.send_many([(str(i), i, {"n": str(i)}) for i in range(30)])
    await sender.send_many([])
    events = [await recv(receiver) for _ in range(30)]
    assert [(e.foreign_id, e.type, e.headers) for e in events] == [
        (str(i), i, {"n": str(i)}) for i in range(30)
    ]
    await sender.close()
    with pytest.raises(RuntimeError, match="closed"):
        await sender.send("x", 1, {})
    await receiver.close()


async def test_notify_wakes_another_process_at_once(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> None:
    # Two streamers on separate pools behave as two processes: only NOTIFY links them.
    other_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        postgres_dsn, min_size=1, max_size=3, open=False
    )
    await other_pool.open()
    try:
        slow = timedelta(seconds=30)
        async with (
            PostgresStreamer(pg_pool, schema=pg_schema, poll_frequency=slow) as receiving,
            PostgresStreamer(other_pool, schema=pg_schema, poll_frequency=slow) as sending,
        ):
            receiver = await receiving.new_receiver(TOPIC, "woken")
            task = asyncio.create_task(receiver.recv())
            await asyncio.sleep(0.3)  # the receiver is waiting
            assert not task.done()
            loop = asyncio.get_running_loop()
            started = loop.time()
            await send(sending, TOPIC, "ping")
            event, ack = await asyncio.wait_for(task, 5)
            assert event.foreign_id == "ping"
            assert loop.time() - started < 1.0
            await ack()
            await receiver.close()
    finally:
        await other_pool.close()


async def test_recv_is_cancellable_and_close_wakes_waiter(streamer: PostgresStreamer) -> None:
    receiver = await streamer.new_receiver(TOPIC, "cancel")
    task = asyncio.create_task(receiver.recv())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    task = asyncio.create_task(receiver.recv())
    await asyncio.sleep(0.1)
    await receiver.close()
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(task, 2)


async def test_purge_deletes_only_what_every_name_acked(
    streamer: PostgresStreamer, pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    a = await streamer.new_receiver(TOPIC, "a")
    b = await streamer.new_receiver(TOPIC, "b")
    await send(streamer, TOPIC, *[str(i) for i in range(6)])
    for _ in range(6):
        await recv(a)
    await a.close()
    for _ in range(2):
        await recv(b)
    assert (await recv(b, ack=False)).foreign_id == "2"
    await b.close()  # records b's acks, gives "2" back
    assert await streamer.purge(TOPIC) == 2
    assert await streamer.purge() == 0
    b = await streamer.new_receiver(TOPIC, "b")
    assert [(await recv(b)).foreign_id for _ in range(4)] == ["2", "3", "4", "5"]
    await b.close()
    assert await streamer.purge(TOPIC) == 4


def test_bad_options_are_refused(pg_pool: AsyncConnectionPool[Any]) -> None:
    with pytest.raises(ValueError, match="letters"):
        PostgresStreamer(pg_pool, schema="x; DROP TABLE y")
    with pytest.raises(ValueError, match="batch_size"):
        PostgresStreamer(pg_pool, batch_size=0)
    with pytest.raises(ValueError, match="claim_lease"):
        PostgresStreamer(pg_pool, claim_lease=timedelta(0))


async def test_recv_does_not_wait_through_a_swallowed_cancellation(
    streamer: PostgresStreamer,
) -> None:
    # Python 3.11's asyncio.wait_for (inside psycopg_pool) can swallow a cancellation. A
    # task left with a pending cancellation must not settle into waiting for events.
    receiver = await streamer.new_receiver(TOPIC, "swallowed")
    started = asyncio.Event()

    async def swallow_then_recv() -> None:
        try:
            started.set()
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # swallowed, as the 3.11 bug does: cancelling() stays 1
        await receiver.recv()

    task = asyncio.create_task(swallow_then_recv())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    await receiver.close()


async def test_listener_reconnects_after_losing_its_connection(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> None:
    other_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        postgres_dsn, min_size=1, max_size=2, open=False
    )
    await other_pool.open()
    slow = timedelta(seconds=30)
    try:
        async with (
            PostgresStreamer(pg_pool, schema=pg_schema, poll_frequency=slow) as receiving,
            PostgresStreamer(other_pool, schema=pg_schema, poll_frequency=slow) as sending,
        ):
            receiver = await receiving.new_receiver(TOPIC, "reconnect")
            await send(sending, TOPIC, "before")
            assert (await recv(receiver)).foreign_id == "before"
            async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as a:
                cur = await a.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query = %s AND pid <> pg_backend_pid()",
                    (f'LISTEN "{pg_schema}_events"',),
                )
                assert [row[0] for row in await cur.fetchall()] == [True]
            await asyncio.sleep(0.5)  # the listener notices and listens again
            await send(sending, TOPIC, "after")
            event = await recv(receiver)  # well within the 30 s poll fallback
            assert event.foreign_id == "after"
            await receiver.close()
    finally:
        await other_pool.close()


async def test_ack_after_close_is_harmless_and_the_event_comes_back(
    streamer: PostgresStreamer,
) -> None:
    receiver = await streamer.new_receiver(TOPIC, "late-ack")
    await send(streamer, TOPIC, "1")
    event, ack = await asyncio.wait_for(receiver.recv(), 5)
    await receiver.close()
    await ack()  # after close: ignored, as in the in-memory streamer
    again = await streamer.new_receiver(TOPIC, "late-ack")
    assert (await recv(again)).id == event.id
    await again.close()


async def test_a_dead_processs_events_go_to_the_next_receiver_at_once(
    postgres_dsn: str, pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    """Claims name their process's LISTEN session: when it ends, the lease is not waited out."""
    app = f"dying-{pg_schema}"
    dying = PostgresStreamer(
        postgres_dsn, schema=pg_schema, pool_kwargs={"kwargs": {"application_name": app}}
    )
    await send(dying, TOPIC, "a", "b", "c")
    first = await dying.new_receiver(TOPIC, "name")
    held = [await recv(first, ack=False) for _ in range(3)]  # claimed for 30 s, never acked
    async with PostgresStreamer(pg_pool, schema=pg_schema) as other:
        second = await other.new_receiver(TOPIC, "name")
        # While the first process lives, its claims stay its own.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(second.recv(), 0.5)
        # The first process dies: every one of its server sessions ends.
        async with pg_pool.connection() as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (app,),
            )
        taken = [await recv(second, ack=False) for _ in range(3)]
        assert [e.id for e in taken] == [e.id for e in held]
        await second.close()
    await dying.close()
