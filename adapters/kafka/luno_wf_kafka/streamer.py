"""KafkaStreamer: luno_wf's event streamer on Kafka topics and consumer groups."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from aiokafka.admin import NewTopic

from luno_wf import Ack, Event

from ._config import ClientConfig, Servers
from ._reader import GroupReader, ReaderHandle
from ._retry import Backoff, is_transient, retry_transient
from .errors import TopicCreationFailed

__all__ = ["KafkaReceiver", "KafkaSender", "KafkaStreamer", "event_id"]

logger = logging.getLogger("luno_wf_kafka")

_TOPIC_ALREADY_EXISTS = 36
_MAX_PARTITIONS = 1 << 15  # event ids keep the partition in bits 48..62

EventTriple = tuple[str, int, Mapping[str, str]]


def event_id(partition: int, offset: int) -> int:
    """The id of the event at ``offset`` of ``partition``: ``(partition << 48) | offset``.

    Unique across the partitions of a topic, identical for every receiver of the event, and
    a non-negative signed 64-bit integer (partitions below 32,768, offsets below 2**48). An
    event's shard under ``parallel_count`` N is ``id % N``, which for N dividing 2**48 is
    ``offset % N``: shards split each partition's events evenly.
    """
    return (partition << 48) | offset


class KafkaStreamer:
    """An :class:`~luno_wf.EventStreamer` on Kafka, through aiokafka.

    Each luno_wf topic string is a Kafka topic, created on first use with ``partitions``
    partitions. A sent event is one message: key = the foreign id given to
    :meth:`KafkaSender.send` (the run id, for the engine's events, so all events of a run
    share a partition and stay in order), value = the status as decimal text, headers =
    the event's headers. Each receiver name is a consumer group; an ack commits the
    offset past the longest acked prefix of that partition, so events not acked are
    redelivered to the group's next receiver.

    The streamer owns one producer and one admin client, opened on first use and closed
    by :meth:`close` (or ``async with``). Nothing touches the network in the constructor.

    Args:
        bootstrap_servers: ``"host:port"`` of one or more brokers.
        partitions: Partitions of each topic this streamer creates (topics that exist are
            used as they are). More partitions let more processes share one receiver name.
        replication_factor: Replicas of each topic created; use 3 in production.
        topic_config: Topic-level settings for created topics, e.g. ``{"retention.ms":
            "604800000"}``.
        producer_options: Extra ``AIOKafkaProducer`` settings (``acks`` defaults to
            ``"all"``; idempotence stays off unless you turn it on).
        consumer_options: Extra ``AIOKafkaConsumer`` settings, e.g. ``session_timeout_ms``
            and ``heartbeat_interval_ms``. Group, offset reset and auto-commit are set by
            the streamer.
        commit_interval: After an ack, wait this long before committing, so that one
            commit covers many acks (commits share the connection with fetches, and each
            costs a round trip). A crash may redeliver what was acked in this window;
            closing a receiver or losing a partition commits at once.
        retry_timeout: How long to retry while the brokers are unreachable before raising
            :class:`~luno_wf_kafka.errors.KafkaUnavailable`.
        **client_options: Connection and security settings passed to every client
            (``client_id``, ``security_protocol``, ``ssl_context``, ``sasl_*``,
            ``request_timeout_ms``, ...).

    Raises:
        TypeError: A keyword option is not one every aiokafka client accepts.
        ValueError: An option is out of range or reserved for the streamer.

    """

    def __init__(
        self,
        bootstrap_servers: Servers,
        *,
        partitions: int = 4,
        replication_factor: int = 1,
        topic_config: Mapping[str, str] | None = None,
        producer_options: Mapping[str, Any] | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        commit_interval: timedelta = timedelta(milliseconds=100),
        retry_timeout: timedelta = timedelta(seconds=60),
        **client_options: Any,
    ) -> None:
        if not 1 <= partitions < _MAX_PARTITIONS:
            raise ValueError(f"partitions must be in 1..{_MAX_PARTITIONS - 1}, got {partitions}")
        if replication_factor < 1:
            raise ValueError(f"replication_factor must be at least 1, got {replication_factor}")
        if commit_interval < timedelta(0):
            raise ValueError(f"commit_interval must not be negative, got {commit_interval!r}")
        self._config = ClientConfig.build(
            bootstrap_servers,
            client_options=client_options,
            producer_options=producer_options,
            consumer_options=consumer_options,
            retry_timeout=retry_timeout,
        )
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._topic_config = dict(topic_config or {})
        self._commit_interval = commit_interval
        self._producer: Any = None
        self._admin: Any = None
        self._lock: asyncio.Lock | None = None
        self._topics: set[str] = set()
        self._receivers: set[KafkaReceiver] = set()
        # One group member per (topic, name) in this process, shared by its receivers.
        self._readers: dict[tuple[str, str], GroupReader] = {}
        self._reader_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"KafkaStreamer({self._config.servers!r}, partitions={self._partitions})"

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every open receiver, then the producer and the admin client; safe twice."""
        if self._closed:
            return
        self._closed = True
        try:
            for receiver in list(self._receivers):
                await receiver.close()
        finally:
            producer, self._producer = self._producer, None
            admin, self._admin = self._admin, None
            try:
                if producer is not None:
                    await producer.stop()
            finally:
                if admin is not None:
                    await admin.close()

    # -- topics ---------------------------------------------------------------------------

    async def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` unless this streamer already did or it exists.

        Raises:
            TopicCreationFailed: The broker refused for another reason than existence.
            KafkaUnavailable: The brokers could not be reached within ``retry_timeout``.

        """
        self._check_open()
        if topic in self._topics:
            return
        async with self._get_lock():
            if topic in self._topics:
                return
            admin = await self._get_admin()
            new_topic = NewTopic(
                topic,
                num_partitions=self._partitions,
                replication_factor=self._replication_factor,
                topic_configs=self._topic_config,
            )

            async def create() -> Any:
                return await admin.create_topics([new_topic])

            response = await retry_transient(
                create, what=f"creating topic {topic!r}", give_up_after=self._config.retry_timeout
            )
            for name, code, message, *_ in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise TopicCreationFailed(
                        f"creating Kafka topic {name!r} failed with error code {code}: {message}"
                    )
            self._topics.add(topic)

    async def _get_admin(self) -> Any:
        # Called with the lock held.
        if self._admin is None:
            admin = self._config.admin()
            await retry_transient(
                admin.start,
                what="connecting the admin client",
                give_up_after=self._config.retry_timeout,
            )
            self._admin = admin
        return self._admin

    async def _get_producer(self) -> Any:
        if self._producer is not None:
            return self._producer
        async with self._get_lock():
            self._check_open()
            if self._producer is None:

                async def start() -> Any:
                    producer = self._config.make_producer()
                    try:
                        await producer.start()
                    except BaseException:
                        await producer.stop()
                        raise
                    return producer

                self._producer = await retry_transient(
                    start, what="starting the producer", give_up_after=self._config.retry_timeout
                )
            return self._producer

    # -- senders and receivers ------------------------------------------------------------

    async def new_sender(self, topic: str) -> KafkaSender:
        """A sender for ``topic`` (created if missing), sharing the streamer's producer."""
        await self.ensure_topic(topic)
        await self._get_producer()
        return KafkaSender(self, topic)

    async def new_receiver(
        self,
        topic: str,
        name: str,
        *,
        stream_from_latest: bool = False,
        poll_frequency: timedelta | None = None,
    ) -> KafkaReceiver:
        """A receiver of ``topic`` in consumer group ``name``.

        Returns once the receiver has joined the group and has its partitions. With
        ``stream_from_latest``, partitions the group never committed start at their end
        as of this call (committed at once, so it holds for the group's later members);
        otherwise at their beginning. ``poll_frequency`` bounds how long the broker holds an
        empty fetch (``fetch_max_wait_ms``) unless ``consumer_options`` sets that.
        """
        if not name:
            raise ValueError("receiver name (the consumer group) must not be empty")
        await self.ensure_topic(topic)
        key = (topic, name)
        lock = self._reader_locks.setdefault(key, asyncio.Lock())
        async with lock:
            self._check_open()
            reader = self._readers.get(key)
            if reader is None or reader.closed:
                reader = GroupReader(
                    make_consumer=lambda: self._config.make_consumer(
                        name, from_latest=stream_from_latest, max_wait=poll_frequency
                    ),
                    topic=topic,
                    group=name,
                    anchor_latest=stream_from_latest,
                    retry_timeout=self._config.retry_timeout,
                    commit_interval=self._commit_interval,
                )
                await reader.start()
                self._readers[key] = reader
            receiver = KafkaReceiver(self, reader.open_handle())
        self._receivers.add(receiver)
        return receiver

    async def _publish(self, topic: str, events: Sequence[EventTriple]) -> None:
        """Send ``events`` pipelined, then wait for all; failed ones are retried in order."""
        self._check_open()
        if not events:
            return
        producer = await self._get_producer()
        what = f"sending {len(events)} event(s) to topic {topic!r}"
        backoff = Backoff(what, self._config.retry_timeout)
        remaining = list(events)
        while remaining:
            try:
                # aiokafka retries a batch for up to request_timeout_ms by itself; the
                # deadline bounds the whole call, however long that is.
                async with asyncio.timeout(max(backoff.remaining(), 0.001)):
                    remaining, errors = await self._send_once(producer, topic, remaining)
            except TimeoutError:
                raise backoff.give_up("not acknowledged") from None
            if not remaining:
                return
            fatal = next((e for e in errors if not is_transient(e)), None)
            if fatal is not None:
                raise fatal
            await backoff.wait(errors[0])

    @staticmethod
    async def _send_once(
        producer: Any, topic: str, events: list[EventTriple]
    ) -> tuple[list[EventTriple], list[BaseException]]:
        """One pipelined attempt: returns the events that failed, in order, and the errors."""
        futures: list[asyncio.Future[Any]] = []
        error: BaseException | None = None
        for foreign_id, status_type, headers in events:
            try:
                futures.append(
                    await producer.send(
                        topic,
                        value=str(int(status_type)).encode(),
                        key=foreign_id.encode(),
                        headers=[(k, v.encode()) for k, v in headers.items()],
                    )
                )
            except Exception as exc:
                error = exc
                break
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [
            event
            for event, result in zip(events, results, strict=False)
            if isinstance(result, BaseException)
        ]
        errors = [r for r in results if isinstance(r, BaseException)]
        if error is not None:
            failed.extend(events[len(futures) :])
            errors.append(error)
        return failed, errors


class KafkaSender:
    """Publishes events to one Kafka topic through its streamer's shared producer."""

    def __init__(self, streamer: KafkaStreamer, topic: str) -> None:
        self._streamer = streamer
        self._topic = topic
        self._closed = False

    @property
    def topic(self) -> str:
        """The Kafka topic this sender publishes to."""
        return self._topic

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"sender for topic {self._topic!r} is closed")

    async def send(self, foreign_id: str, status_type: int, headers: Mapping[str, str]) -> None:
        """Publish one event; returns once the broker acknowledged it (``acks``).

        Raises:
            KafkaUnavailable: The brokers stayed unreachable for ``retry_timeout``.

        """
        self._check_open()
        await self._streamer._publish(self._topic, [(foreign_id, status_type, headers)])

    async def send_many(self, events: Sequence[tuple[str, int, Mapping[str, str]]]) -> None:
        """Publish ``(foreign_id, status_type, headers)`` triples pipelined, then await all.

        Events with the same foreign id keep their order. Returns once every event was
        acknowledged; events that failed transiently are sent again (a retry may repeat an
        event, which receivers tolerate: delivery is at least once).
        """
        self._check_open()
        await self._streamer._publish(self._topic, events)

    async def close(self) -> None:
        """Close the sender (the producer is the streamer's, closed with it); safe twice."""
        self._closed = True


class KafkaReceiver:
    """Receives one Kafka topic in the consumer group named by the receiver.

    Receivers of the same topic and name opened on one streamer share one group member:
    whichever calls :meth:`recv` gets the next event, and events one of them had not acked
    when it closed go to the others (as with the in-memory streamer). Receivers in other
    processes, or on other streamers, are other members: Kafka splits the partitions
    between them.
    """

    def __init__(self, streamer: KafkaStreamer, reader: ReaderHandle) -> None:
        self._streamer = streamer
        self._reader = reader

    async def recv(self) -> tuple[Event, Ack]:
        """Wait for the next event (cancellable) and return it with its ack.

        A message whose value is not a decimal status (not written by a luno_wf sender) is
        logged, acked and skipped.

        Raises:
            RuntimeError: The receiver is closed.
            KafkaUnavailable: Fetching kept failing for longer than ``retry_timeout``.

        """
        while True:
            record, ack = await self._reader.next()
            event = await self._event(record, ack)
            if event is not None:
                return event, ack

    async def recv_many(self, limit: int) -> list[tuple[Event, Ack]]:
        """Wait for the next event (cancellable), then take up to ``limit`` in all.

        The events after the first are those already fetched from the broker, in order.

        Raises:
            RuntimeError: The receiver is closed.
            KafkaUnavailable: Fetching kept failing for longer than ``retry_timeout``.

        """
        batch = [await self.recv()]
        while len(batch) < limit:
            taken = self._reader.next_nowait()
            if taken is None:
                break
            record, ack = taken
            event = await self._event(record, ack)
            if event is not None:
                batch.append((event, ack))
        return batch

    async def _event(self, record: Any, ack: Ack) -> Event | None:
        """The event a message carries, or None (acked and logged) if it carries none."""
        try:
            status_type = int(record.value)
        except (TypeError, ValueError):
            logger.warning(
                "skipping message %s[%d]@%d: value %r is not a decimal status",
                record.topic,
                record.partition,
                record.offset,
                record.value,
            )
            await ack()
            return None
        return Event(
            id=event_id(record.partition, record.offset),
            foreign_id=record.key.decode() if record.key is not None else "",
            type=status_type,
            headers={k: v.decode(errors="replace") for k, v in record.headers},
            created_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        )

    async def close(self) -> None:
        """Commit what was acked and leave the group; un-acked events are redelivered.

        Safe to call twice.
        """
        self._streamer._receivers.discard(self)
        await self._reader.close()
