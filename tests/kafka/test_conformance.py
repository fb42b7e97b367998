"""The Kafka adapters pass the conformance suite (luno_wf_adaptertest) against a broker."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from aiokafka import AIOKafkaProducer
from luno_wf_adaptertest import (
    ConnectorContract,
    ConnectorFactory,
    EventStreamerContract,
    StreamerFactory,
)
from luno_wf_kafka import KafkaConnector, KafkaStreamer

from luno_wf import ConnectorEvent
from tests.fixtures.kafka import make_streamer

pytestmark = pytest.mark.kafka


class TestKafkaStreamer(EventStreamerContract):
    # One partition per topic: some cases expect events in the order they were sent across
    # foreign ids, which Kafka keeps only within a partition. The multi-partition behaviour
    # (order per key, ids unique across partitions, work shared) is in test_streamer.py.
    recv_timeout: ClassVar[timedelta] = timedelta(seconds=20)
    workflow_timeout: ClassVar[timedelta] = timedelta(seconds=60)
    max_examples: ClassVar[int | None] = 5
    stateful_step_count: ClassVar[int | None] = 15

    @pytest.fixture
    def make_streamer(
        self, kafka_bootstrap: str, kafka_consumer_options: dict[str, Any]
    ) -> StreamerFactory:
        @contextlib.asynccontextmanager
        async def factory() -> AsyncIterator[KafkaStreamer]:
            async with make_streamer(
                kafka_bootstrap, kafka_consumer_options, partitions=1
            ) as streamer:
                yield streamer

        return factory


class TestKafkaConnector(ConnectorContract):
    recv_timeout: ClassVar[timedelta] = timedelta(seconds=20)
    workflow_timeout: ClassVar[timedelta] = timedelta(seconds=60)

    @pytest.fixture
    def make_connector(
        self, kafka_bootstrap: str, kafka_consumer_options: dict[str, Any]
    ) -> ConnectorFactory:
        @contextlib.asynccontextmanager
        async def factory(seeds: Sequence[ConnectorEvent]) -> AsyncIterator[KafkaConnector]:
            topic = f"connector-topic-{uuid.uuid4().hex[:10]}"
            async with make_streamer(kafka_bootstrap, kafka_consumer_options) as streamer:
                await streamer.ensure_topic(topic)
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                for seed in seeds:
                    await producer.send_and_wait(
                        topic, b"{}", key=seed.foreign_id.encode(), partition=0
                    )
            finally:
                await producer.stop()
            yield KafkaConnector(
                kafka_bootstrap,
                topic,
                consumer_options=kafka_consumer_options,
                retry_timeout=timedelta(seconds=20),
            )

        return factory
