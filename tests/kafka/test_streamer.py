"""KafkaStreamer against a real broker: luno's streamer cases (spec §5.2) and more."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from luno_wf_kafka import KafkaStreamer, event_id

from luno_wf import Event
from tests.fixtures.kafka import make_streamer

from ._helpers import nothing_within, recv, recv_all

pytestmark = pytest.mark.kafka


async def test_stream_from_latest_only_sees_later_events(
    kafka_streamer: KafkaStreamer, unique: str
) -> None:
    topic = f"test-1-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    await sender.send("123", 4, {"topic": topic})
    await sender.send("456", 5, {"topic": topic})
    receiver = await kafka_streamer.new_receiver(topic, "my-receiver", stream_from_latest=True)

    # Sent after new_receiver but before the first recv: delivered.
    await sender.send("789", 5, {"topic": topic})
    event, ack = await recv(receiver)
    assert event.foreign_id == "789"
    await ack()
    await receiver.close()
    await receiver.close()  # safe twice

    # The committed position wins over "latest".
    await sender.send("101", 5, {"topic": topic})
    second = await kafka_streamer.new_receiver(topic, "my-receiver", stream_from_latest=True)
    event, ack = await recv(second)
    assert event.foreign_id == "101"
    await ack()
    await second.close()
    await sender.close()
    await sender.close()


async def test_from_beginning_without_stream_from_latest(
    kafka_streamer: KafkaStreamer, unique: str
) -> None:
    topic = f"begin-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    for i in range(3):
        await sender.send("run", i + 1, {})
    receiver = await kafka_streamer.new_receiver(topic, f"g-{unique}")
    events = await recv_all(receiver, 3)
    assert [e.type for e in events] == [1, 2, 3]
    await receiver.close()


async def test_event_fields_round_trip(kafka_streamer: KafkaStreamer, unique: str) -> None:
    topic = f"fields-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    receiver = await kafka_streamer.new_receiver(topic, f"g-{unique}")
    headers = {"topic": topic, "run_id": "r-1", "empty": "", "unicode": "ünï ✓"}
    before = datetime.now(UTC)
    await sender.send("run-1", 7, headers)
    event, ack = await recv(receiver)
    await ack()
    assert event.foreign_id == "run-1"
    assert event.type == 7
    assert event.headers == headers
    assert event.created_at.tzinfo is not None
    assert event.created_at.utcoffset() == timedelta(0)
    assert abs(event.created_at - before) < timedelta(seconds=10)
    assert event.id >= 0
    await receiver.close()


async def test_unacked_event_is_redelivered_to_next_receiver(
    kafka_streamer: KafkaStreamer, unique: str
) -> None:
    topic = f"redeliver-{unique}"
    name = f"g-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    for status in (1, 2, 3):
        await sender.send("same-run", status, {})  # one key: one partition, in order
    first = await kafka_streamer.new_receiver(topic, name)
    event, ack = await recv(first)
    assert event.type == 1
    await ack()
    event, _ = await recv(first)  # received, never acked
    assert event.type == 2
    await first.close()

    second = await kafka_streamer.new_receiver(topic, name)
    events = await recv_all(second, 2)
    assert [e.type for e in events] == [2, 3]
    await second.close()


async def test_commit_never_passes_an_unacked_event(
    kafka_streamer: KafkaStreamer, unique: str
) -> None:
    topic = f"prefix-{unique}"
    name = f"g-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    for status in range(1, 6):
        await sender.send("same-run", status, {})
    first = await kafka_streamer.new_receiver(topic, name)
    received = []
    for _ in range(5):
        received.append(await recv(first))
    # Ack all but the third, out of order.
    for index in (4, 0, 3, 1):
        await received[index][1]()
    await first.close()

    # 1 and 2 are done; 3 was never acked, so 3, 4 and 5 come again.
    second = await kafka_streamer.new_receiver(topic, name)
    events = await recv_all(second, 3)
    assert [e.type for e in events] == [3, 4, 5]
    assert [e.id for e in events] == [e.id for e, _ in received[2:]]
    assert await nothing_within(second, 1.0)
    await second.close()


async def test_acks_in_any_order_commit_everything(
    kafka_streamer: KafkaStreamer, unique: str
) -> None:
    topic = f"reverse-{unique}"
    name = f"g-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    for status in range(1, 5):
        await sender.send("same-run", status, {})
    first = await kafka_streamer.new_receiver(topic, name)
    received = [await recv(first) for _ in range(4)]
    for _, ack in reversed(received):
        await ack()
        await ack()  # acking twice is harmless
    await first.close()

    await sender.send("same-run", 9, {})
    second = await kafka_streamer.new_receiver(topic, name)
    event, ack = await recv(second)
    assert event.type == 9
    await ack()
    await second.close()


async def test_close_flushes_acks_even_with_a_long_commit_interval(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], unique: str
) -> None:
    topic = f"flush-{unique}"
    name = f"g-{unique}"
    async with make_streamer(
        kafka_bootstrap, kafka_consumer_options, commit_interval=timedelta(minutes=5)
    ) as streamer:
        sender = await streamer.new_sender(topic)
        await sender.send("a", 1, {})
        await sender.send("a", 2, {})
        first = await streamer.new_receiver(topic, name)
        event, ack = await recv(first)
        await ack()
        await first.close()
        second = await streamer.new_receiver(topic, name)
        event, ack = await recv(second)
        assert event.type == 2
        await second.close()


async def test_names_are_independent_and_see_identical_ids(
    kafka_streamer: KafkaStreamer, unique: str
) -> None:
    topic = f"names-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    one, two = await asyncio.gather(
        kafka_streamer.new_receiver(topic, f"one-{unique}"),
        kafka_streamer.new_receiver(topic, f"two-{unique}"),
    )
    for i in range(10):
        await sender.send(f"run-{i}", 1, {})
    a = await recv_all(one, 10)
    b = await recv_all(two, 10)
    assert sorted(e.id for e in a) == sorted(e.id for e in b)
    assert {e.foreign_id for e in a} == {f"run-{i}" for i in range(10)}
    await one.close()
    await two.close()


async def test_event_ids_unique_across_partitions_and_keys_keep_partition(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], unique: str
) -> None:
    topic = f"ids-{unique}"
    async with make_streamer(kafka_bootstrap, kafka_consumer_options, partitions=4) as streamer:
        sender = await streamer.new_sender(topic)
        keys = [f"run-{i}" for i in range(20)]
        await sender.send_many([(key, 1, {}) for key in keys])
        await sender.send_many([(key, 2, {}) for key in keys])
        receiver = await streamer.new_receiver(topic, f"g-{unique}")
        events = await recv_all(receiver, 40)
        await receiver.close()
    ids = [e.id for e in events]
    assert len(set(ids)) == 40
    assert all(0 <= i < 2**63 for i in ids)
    partitions_of: dict[str, set[int]] = {}
    for e in events:
        partitions_of.setdefault(e.foreign_id, set()).add(e.id >> 48)
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len({p for ps in partitions_of.values() for p in ps}) > 1  # keys spread out
    assert event_id(3, 5) == (3 << 48) | 5


async def test_send_many_keeps_order_per_key(kafka_streamer: KafkaStreamer, unique: str) -> None:
    topic = f"many-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    batch = [(f"run-{i % 5}", i + 1, {"n": str(i)}) for i in range(200)]
    await sender.send_many(batch)
    await sender.send_many([])
    receiver = await kafka_streamer.new_receiver(topic, f"g-{unique}")
    events = await recv_all(receiver, 200)
    await receiver.close()
    by_key: dict[str, list[int]] = {}
    for e in events:
        by_key.setdefault(e.foreign_id, []).append(e.type)
    assert sorted(t for ts in by_key.values() for t in ts) == list(range(1, 201))
    assert all(ts == sorted(ts) for ts in by_key.values())


async def test_topics_sharing_a_streamer_stay_apart(
    kafka_streamer: KafkaStreamer, unique: str
) -> None:
    first, second = f"wf-1-{unique}", f"wf-2-{unique}"
    s1 = await kafka_streamer.new_sender(first)
    s2 = await kafka_streamer.new_sender(second)
    name = f"same-name-{unique}"
    r1 = await kafka_streamer.new_receiver(first, name)
    r2 = await kafka_streamer.new_receiver(second, name + "-2")
    await s1.send("a", 1, {})
    await s2.send("b", 2, {})
    e1, ack1 = await recv(r1)
    e2, ack2 = await recv(r2)
    await ack1()
    await ack2()
    assert (e1.foreign_id, e1.type) == ("a", 1)
    assert (e2.foreign_id, e2.type) == ("b", 2)
    assert await nothing_within(r1, 0.5)
    await r1.close()
    await r2.close()


async def test_receivers_of_one_name_share_the_work(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], unique: str
) -> None:
    topic = f"share-{unique}"
    name = f"g-{unique}"
    # Two streamers stand for two processes: two members of the group, splitting partitions.
    async with (
        make_streamer(kafka_bootstrap, kafka_consumer_options, partitions=4) as streamer,
        make_streamer(kafka_bootstrap, kafka_consumer_options, partitions=4) as other,
    ):
        sender = await streamer.new_sender(topic)
        first = await streamer.new_receiver(topic, name)
        second = await other.new_receiver(topic, name)
        # Let the first member finish the rebalance the second one's join started.
        await asyncio.sleep(1.5)
        await sender.send_many([(f"run-{i}", 1, {}) for i in range(40)])

        got: dict[str, list[Event]] = {"first": [], "second": []}
        all_in = asyncio.Event()

        async def drain(label: str, receiver: Any) -> None:
            while True:
                event, ack = await receiver.recv()
                got[label].append(event)
                await ack()
                if len(got["first"]) + len(got["second"]) >= 40:
                    all_in.set()

        async with asyncio.timeout(20):
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(drain("first", first)),
                    tg.create_task(drain("second", second)),
                ]
                await all_in.wait()
                await asyncio.sleep(0.5)  # any duplicate would show up now
                for task in tasks:
                    task.cancel()
    ids = [e.id for e in got["first"] + got["second"]]
    assert len(ids) == 40
    assert len(set(ids)) == 40
    assert got["first"] and got["second"]


async def test_recv_is_cancellable_and_the_receiver_still_works(
    kafka_streamer: KafkaStreamer, unique: str
) -> None:
    topic = f"cancel-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    receiver = await kafka_streamer.new_receiver(topic, f"g-{unique}")
    task = asyncio.create_task(receiver.recv())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sender.send("after", 3, {})
    event, ack = await recv(receiver)
    assert event.foreign_id == "after"
    await ack()
    await receiver.close()
    with pytest.raises(RuntimeError, match="closed"):
        await receiver.recv()


async def test_existing_topic_is_used_as_it_is(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], unique: str
) -> None:
    topic = f"existing-{unique}"
    async with make_streamer(kafka_bootstrap, kafka_consumer_options, partitions=1) as first:
        await first.ensure_topic(topic)
    # Another streamer asks to create it with more partitions: error 36 is not an error.
    async with make_streamer(kafka_bootstrap, kafka_consumer_options, partitions=8) as second:
        sender = await second.new_sender(topic)
        await sender.send_many([(f"k{i}", 1, {}) for i in range(30)])
        receiver = await second.new_receiver(topic, f"g-{unique}")
        events = await recv_all(receiver, 30)
        assert {e.id >> 48 for e in events} == {0}
        await receiver.close()


async def test_a_foreign_message_is_skipped(
    kafka_streamer: KafkaStreamer, kafka_bootstrap: str, unique: str
) -> None:
    topic = f"foreign-{unique}"
    await kafka_streamer.ensure_topic(topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not a status", key=b"x")
        await producer.send_and_wait(topic, None, key=b"tombstone")
    finally:
        await producer.stop()
    sender = await kafka_streamer.new_sender(topic)
    await sender.send("x", 4, {})
    receiver = await kafka_streamer.new_receiver(topic, f"g-{unique}")
    event, ack = await recv(receiver)
    assert (event.foreign_id, event.type) == ("x", 4)
    await ack()
    await receiver.close()


async def test_closing_the_streamer_closes_its_receivers(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], unique: str
) -> None:
    topic = f"close-{unique}"
    streamer = make_streamer(kafka_bootstrap, kafka_consumer_options)
    sender = await streamer.new_sender(topic)
    receiver = await streamer.new_receiver(topic, f"g-{unique}")
    await streamer.close()
    await streamer.close()
    with pytest.raises(RuntimeError, match="closed"):
        await receiver.recv()
    with pytest.raises(RuntimeError, match="closed"):
        await sender.send("a", 1, {})
    with pytest.raises(RuntimeError, match="closed"):
        await streamer.new_sender(topic)
    await receiver.close()
    await sender.close()
    with pytest.raises(RuntimeError, match="closed"):
        await sender.send("a", 1, {})


async def test_receivers_of_one_name_in_one_streamer_share_one_member(
    kafka_streamer: KafkaStreamer, unique: str
) -> None:
    topic = f"in-process-{unique}"
    name = f"g-{unique}"
    sender = await kafka_streamer.new_sender(topic)
    for status in (1, 2, 3):
        await sender.send("same-run", status, {})
    first = await kafka_streamer.new_receiver(topic, name)
    second = await kafka_streamer.new_receiver(topic, name)  # no second join: same member
    event, _ = await recv(first)
    assert event.type == 1
    await first.close()  # not acked: goes to the other receiver of the name, at once

    events = [await recv(second) for _ in range(3)]
    assert [e.type for e, _ in events] == [1, 2, 3]
    assert events[0][0].id == event.id
    for _, ack in events:
        await ack()
    await second.close()

    # Everything was acked before the member left: a new receiver sees only new events.
    await sender.send("same-run", 4, {})
    third = await kafka_streamer.new_receiver(topic, name)
    event, ack = await recv(third)
    assert event.type == 4
    await ack()
    await third.close()
