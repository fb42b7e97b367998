"""MemStreamer: per-topic in-memory logs with durable names and redelivery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from .._clock import Clock, SystemClock
from .._event import Event
from ..adapter import Ack
from ._log import Reader, SharedLog

__all__ = ["MemStreamer"]


class MemStreamer:
    """An :class:`~luno_wf.adapter.EventStreamer` in one process.

    Each topic is its own log; each receiver name has one position per topic. Receivers of
    the same name share the work; events a closed receiver had not acked go to the next
    receiver of that name. Receivers wait without polling. Event ids are unique and
    increasing across all topics of one streamer.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._topics: dict[str, SharedLog[Event]] = {}
        self._next_id = 1

    def _log(self, topic: str) -> SharedLog[Event]:
        log = self._topics.get(topic)
        if log is None:
            log = self._topics[topic] = SharedLog()
        return log

    def _append(
        self,
        topic: str,
        foreign_id: str,
        status_type: int,
        headers: Mapping[str, str],
        now: datetime | None = None,
    ) -> None:
        event = Event(
            id=self._next_id,
            foreign_id=foreign_id,
            type=int(status_type),
            headers=dict(headers),
            created_at=now or self._clock.now(),
        )
        self._next_id += 1
        self._log(topic).append(event)

    async def new_sender(self, topic: str) -> MemSender:
        """A sender for ``topic``."""
        return MemSender(self, topic)

    async def new_receiver(
        self,
        topic: str,
        name: str,
        *,
        stream_from_latest: bool = False,
        poll_frequency: timedelta | None = None,
    ) -> MemReceiver:
        """A receiver of ``topic`` under ``name`` (``poll_frequency`` is not needed here)."""
        group = self._log(topic).group(name, from_latest=stream_from_latest)
        return MemReceiver(Reader(group))


class MemSender:
    """Sends to one topic of a :class:`MemStreamer`."""

    def __init__(self, streamer: MemStreamer, topic: str) -> None:
        self._streamer = streamer
        self._topic = topic
        self._closed = False

    async def send(self, foreign_id: str, status_type: int, headers: Mapping[str, str]) -> None:
        """Append one event to the topic."""
        if self._closed:
            raise RuntimeError(f"sender for topic {self._topic!r} is closed")
        self._streamer._append(self._topic, foreign_id, status_type, headers)

    async def send_many(self, events: Sequence[tuple[str, int, Mapping[str, str]]]) -> None:
        """Append several events to the topic, in order."""
        if self._closed:
            raise RuntimeError(f"sender for topic {self._topic!r} is closed")
        now = self._streamer._clock.now()
        for foreign_id, status_type, headers in events:
            self._streamer._append(self._topic, foreign_id, status_type, headers, now)

    async def close(self) -> None:
        """Close the sender; safe twice."""
        self._closed = True


class MemReceiver:
    """Receives one topic of a :class:`MemStreamer` under one name."""

    def __init__(self, reader: Reader[Event]) -> None:
        self._reader = reader

    async def recv(self) -> tuple[Event, Ack]:
        """Wait for the next event; cancellable."""
        position, event = await self._reader.next()

        async def ack() -> None:
            self._reader.ack(position)

        return event, ack

    async def recv_many(self, limit: int) -> list[tuple[Event, Ack]]:
        """Wait for the next event, then take up to ``limit`` in all without waiting."""
        batch = [await self.recv()]
        reader = self._reader
        while len(batch) < limit:
            taken = reader.take_ready()
            if taken is None:
                break
            position, event = taken

            async def ack(position: int = position) -> None:
                reader.ack(position)

            batch.append((event, ack))
        return batch

    async def close(self) -> None:
        """Close; un-acked events are redelivered to the next receiver of this name."""
        self._reader.close()
