"""KafkaConnector: feed any Kafka topic into a workflow through a connector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from luno_wf import Ack, ConnectorEvent

from ._config import ClientConfig, Servers
from ._reader import GroupReader

__all__ = [
    "default_translate",
    "KafkaConnector",
    "KafkaConnectorConsumer",
    "KafkaMessage",
    "Translate",
]


@attrs.frozen(kw_only=True)
class KafkaMessage:
    """A consumed Kafka message, as handed to a connector's ``translate`` function.

    Attributes:
        topic: The topic it was read from.
        partition: Its partition.
        offset: Its offset in the partition.
        key: The message key, or None.
        value: The message value, or None (a tombstone).
        headers: The headers in order, duplicates kept.
        timestamp: The message timestamp (producer or broker time), aware UTC.

    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: datetime


Translate = Callable[[KafkaMessage], ConnectorEvent]
"""Turns a consumed message into the :class:`~luno_wf.ConnectorEvent` a connector receives."""


def default_translate(message: KafkaMessage) -> ConnectorEvent:
    """The default translation of a message into a :class:`~luno_wf.ConnectorEvent`.

    ``id`` = ``"<partition>-<offset>"`` (stable across redeliveries, unique in the topic),
    ``foreign_id`` = the key as UTF-8 text (``""`` if none), ``type`` = the topic,
    ``headers`` = the headers as text (the last of duplicates wins), ``created_at`` = the
    message timestamp.
    """
    return ConnectorEvent(
        id=f"{message.partition}-{message.offset}",
        foreign_id=message.key.decode(errors="replace") if message.key is not None else "",
        type=message.topic,
        headers={k: v.decode(errors="replace") for k, v in message.headers},
        created_at=message.timestamp,
    )


class KafkaConnector:
    """A :class:`~luno_wf.ConnectorConstructor` reading one Kafka topic.

    ``make(consumer_name)`` joins consumer group ``consumer_name`` on ``topic``, starting
    at the beginning of the topic if the group never committed. Each message is turned into
    a :class:`~luno_wf.ConnectorEvent` by ``translate``; acking it commits the offset past
    the longest acked prefix of its partition, so un-acked messages are redelivered. The
    topic is not created here: it belongs to whoever produces to it.

    Args:
        bootstrap_servers: ``"host:port"`` of one or more brokers.
        topic: The Kafka topic to consume.
        translate: Message to event; default :func:`default_translate`. An exception it raises is
            raised from ``recv`` (the message is not acked, so it comes again).
        consumer_options: Extra ``AIOKafkaConsumer`` settings (e.g. session timeouts).
        commit_interval: After an ack, wait this long before committing.
        retry_timeout: How long to retry while the brokers are unreachable.
        **client_options: Connection and security settings (see
            :class:`~luno_wf_kafka.KafkaStreamer`).

    Raises:
        TypeError: A keyword option is not a connection or security setting.
        ValueError: An option is reserved for the connector, or the topic is empty.

    """

    def __init__(
        self,
        bootstrap_servers: Servers,
        topic: str,
        translate: Translate | None = None,
        *,
        consumer_options: Mapping[str, Any] | None = None,
        commit_interval: timedelta = timedelta(milliseconds=100),
        retry_timeout: timedelta = timedelta(seconds=60),
        **client_options: Any,
    ) -> None:
        if not topic:
            raise ValueError("topic must not be empty")
        if commit_interval < timedelta(0):
            raise ValueError(f"commit_interval must not be negative, got {commit_interval!r}")
        self._config = ClientConfig.build(
            bootstrap_servers,
            client_options=client_options,
            producer_options=None,
            consumer_options=consumer_options,
            retry_timeout=retry_timeout,
        )
        self._topic = topic
        self._translate: Translate = translate or default_translate
        self._commit_interval = commit_interval

    @property
    def topic(self) -> str:
        """The Kafka topic consumed."""
        return self._topic

    async def make(self, consumer_name: str) -> KafkaConnectorConsumer:
        """A consumer of the topic in group ``consumer_name``, once it has its partitions."""
        if not consumer_name:
            raise ValueError("consumer_name (the consumer group) must not be empty")
        reader = GroupReader(
            make_consumer=lambda: self._config.make_consumer(consumer_name, from_latest=False),
            topic=self._topic,
            group=consumer_name,
            anchor_latest=False,
            retry_timeout=self._config.retry_timeout,
            commit_interval=self._commit_interval,
        )
        await reader.start()
        return KafkaConnectorConsumer(reader, self._translate)


class KafkaConnectorConsumer:
    """Reads a :class:`KafkaConnector`'s topic as one member of a consumer group."""

    def __init__(self, reader: GroupReader, translate: Translate) -> None:
        self._reader = reader
        self._translate = translate

    async def recv(self) -> tuple[ConnectorEvent, Ack]:
        """Wait for the next message (cancellable) and return its event and ack."""
        record, ack = await self._reader.next()
        message = KafkaMessage(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple((k, bytes(v)) for k, v in record.headers),
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        )
        return self._translate(message), ack

    async def close(self) -> None:
        """Commit what was acked and leave the group; safe to call twice."""
        await self._reader.close()
