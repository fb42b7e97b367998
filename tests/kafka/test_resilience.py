"""The adapters across broker outages, on a private Tansu broker each test restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from luno_wf_kafka import KafkaStreamer, KafkaUnavailable

from tests.fixtures.kafka import TansuBroker, free_port, make_streamer

from ._helpers import recv

pytestmark = pytest.mark.kafka


@pytest.fixture
def private_broker() -> Iterator[TansuBroker]:
    broker = TansuBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def test_no_io_in_constructors() -> None:
    # Nothing listens there: constructing must still succeed.
    KafkaStreamer(f"127.0.0.1:{free_port()}")


async def test_unreachable_broker_raises_after_retry_timeout() -> None:
    streamer = KafkaStreamer(f"127.0.0.1:{free_port()}", retry_timeout=timedelta(seconds=1))
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="retry_timeout"):
        await streamer.new_sender("nowhere")
    assert time.monotonic() - started < 10
    await streamer.close()


async def test_send_waits_out_a_broker_restart(
    private_broker: TansuBroker, kafka_consumer_options: dict[str, Any], unique: str
) -> None:
    topic = f"restart-{unique}"
    async with make_streamer(private_broker.bootstrap, kafka_consumer_options) as streamer:
        sender = await streamer.new_sender(topic)
        await sender.send("before", 1, {})

        private_broker.stop()
        sending = asyncio.create_task(sender.send("during", 2, {}))
        await asyncio.sleep(1.5)
        assert not sending.done()
        private_broker.start()
        async with asyncio.timeout(30):
            await sending

        # The restarted broker lost every topic (memory storage), and Tansu does not serve
        # the partitions it re-created on the retried produce: check the reconnected
        # producer and a new consumer on a fresh topic instead.
        fresh = f"{topic}-after"
        sender = await streamer.new_sender(fresh)
        receiver = await streamer.new_receiver(fresh, f"g-{unique}")
        await sender.send("after", 3, {})
        event, ack = await recv(receiver)
        assert (event.foreign_id, event.type) == ("after", 3)
        await ack()
        await receiver.close()


async def test_send_gives_up_when_the_broker_stays_away(
    private_broker: TansuBroker, kafka_consumer_options: dict[str, Any], unique: str
) -> None:
    topic = f"gone-{unique}"
    # The producer's own request timeout bounds how long close() waits for the batch
    # it still holds; keep it short here.
    async with make_streamer(
        private_broker.bootstrap,
        kafka_consumer_options,
        retry_timeout=timedelta(seconds=2),
        request_timeout_ms=3000,
    ) as streamer:
        sender = await streamer.new_sender(topic)
        private_broker.stop()
        started = time.monotonic()
        with pytest.raises(KafkaUnavailable, match="retry_timeout"):
            await sender.send_many([("a", 1, {}), ("b", 2, {})])
        assert time.monotonic() - started < 10
