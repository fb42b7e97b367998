"""KafkaConnector against a real broker, alone and feeding a workflow (spec §5.5)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from aiokafka import AIOKafkaProducer
from luno_wf_kafka import KafkaConnector, KafkaMessage, default_translate

from luno_wf import API, Builder, ConnectorEvent, Run
from luno_wf.errors import RecordNotFound
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer

from ._helpers import nothing_within, recv, recv_all

pytestmark = pytest.mark.kafka


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[Any]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _produce(producer: Any, topic: str, *keys: str, **headers: str) -> None:
    # One message per request (Tansu reports end offsets right only for single-record
    # batches), all to partition 0 so that the order is known.
    for key in keys:
        await producer.send_and_wait(
            topic,
            b"payload",
            key=key.encode(),
            partition=0,
            headers=[(k, v.encode()) for k, v in headers.items()],
        )


def _connector(bootstrap: str, topic: str, options: dict[str, Any], **kw: Any) -> KafkaConnector:
    return KafkaConnector(
        bootstrap, topic, consumer_options=options, retry_timeout=timedelta(seconds=20), **kw
    )


async def test_default_translation(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], producer: Any, unique: str
) -> None:
    topic = f"connector-topic-{unique}"
    before = datetime.now(UTC)
    await _produce(producer, topic, "SKDJF-2304893-SDFKJBSD", "LSKDF-23OU5QL-23K45B23", h="v")
    consumer = await _connector(kafka_bootstrap, topic, kafka_consumer_options).make(f"c-{unique}")
    events = await recv_all(consumer, 2)
    await consumer.close()
    await consumer.close()
    assert [e.foreign_id for e in events] == ["SKDJF-2304893-SDFKJBSD", "LSKDF-23OU5QL-23K45B23"]
    assert all(e.type == topic for e in events)
    assert all(e.headers == {"h": "v"} for e in events)
    assert all(abs(e.created_at - before) < timedelta(seconds=10) for e in events)
    assert all(e.created_at.utcoffset() == timedelta(0) for e in events)
    assert [e.id for e in events] == ["0-0", "0-1"]


async def test_custom_translation_and_redelivery(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], producer: Any, unique: str
) -> None:
    topic = f"connector-custom-{unique}"
    await _produce(producer, topic, "a", "b", "c")
    seen: list[KafkaMessage] = []

    def translate(message: KafkaMessage) -> ConnectorEvent:
        seen.append(message)
        event = default_translate(message)
        return attrs.evolve(event, id=f"offset-{message.offset}", type="custom")

    connector = _connector(kafka_bootstrap, topic, kafka_consumer_options, translate=translate)
    name = f"c-{unique}"
    first = await connector.make(name)
    event, ack = await recv(first)
    assert (event.id, event.foreign_id, event.type) == ("offset-0", "a", "custom")
    await ack()
    event, _ = await recv(first)  # not acked: comes again
    assert event.foreign_id == "b"
    await first.close()
    assert seen[0].value == b"payload" and seen[0].key == b"a"

    second = await connector.make(name)
    events = await recv_all(second, 2)
    assert [e.foreign_id for e in events] == ["b", "c"]
    assert await nothing_within(second, 0.5)
    await second.close()


async def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="topic"):
        KafkaConnector("127.0.0.1:1", "")
    with pytest.raises(ValueError, match="group_id"):
        KafkaConnector("127.0.0.1:1", "t", consumer_options={"group_id": "x"})
    with pytest.raises(TypeError, match="linger_ms"):
        KafkaConnector("127.0.0.1:1", "t", linger_ms=5)


class SyncStatus(enum.IntEnum):
    UNKNOWN = 0
    STARTED = 1
    EMAIL_SET = 2
    REGULATION_TIMEOUT = 3
    COMPLETED = 4


@attrs.define
class User:
    uid: str = ""
    email: str = ""
    country_code: str = ""


async def _wait_for_status(wf: Any, foreign_id: str, status: SyncStatus) -> Any:
    async with asyncio.timeout(30):
        while True:
            try:
                record = await wf.latest(foreign_id)
            except RecordNotFound:
                record = None
            if record is not None and record.status == status:
                return record
            await asyncio.sleep(0.05)


async def test_connector_feeds_a_workflow(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], producer: Any, unique: str
) -> None:
    """Spec §5.5: each seeded message triggers a run that reaches EMAIL_SET."""
    topic = f"connector-topic-{unique}"
    seeds = ["SKDJF-2304893-SDFKJBSD", "LSKDF-23OU5QL-23K45B23"]
    await _produce(producer, topic, *seeds)

    async def on_event(api: API[User, SyncStatus], event: ConnectorEvent) -> None:
        await api.trigger(event.foreign_id, initial_value=User(uid=event.foreign_id))

    async def set_email(run: Run[User, SyncStatus]) -> SyncStatus:
        run.object.email = "connector@workflow.com"
        return SyncStatus.EMAIL_SET

    b = Builder(f"connector-test-{unique}", User, SyncStatus)
    b.add_connector("tester", _connector(kafka_bootstrap, topic, kafka_consumer_options), on_event)
    b.add_step(SyncStatus.STARTED, set_email, SyncStatus.EMAIL_SET)
    wf = b.build(MemStreamer(), MemRecordStore(), MemRoleScheduler())
    async with wf:
        for foreign_id in seeds:
            record = await _wait_for_status(wf, foreign_id, SyncStatus.EMAIL_SET)
            assert record.object == User(uid=foreign_id, email="connector@workflow.com")
