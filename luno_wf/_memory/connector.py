"""MemConnector: an in-memory source of connector events."""

from __future__ import annotations

from collections.abc import Iterable

from .._event import ConnectorEvent
from ..adapter import Ack
from ._log import Reader, SharedLog

__all__ = ["MemConnector"]


class MemConnector:
    """A :class:`~luno_wf.adapter.ConnectorConstructor` over events held in memory.

    Seed it with events and :meth:`add` more while it runs; each consumer name keeps its own
    position and un-acked events are redelivered to the name's next consumer.
    """

    def __init__(self, events: Iterable[ConnectorEvent] = ()) -> None:
        self._log: SharedLog[ConnectorEvent] = SharedLog()
        for event in events:
            self._log.items.append(event)

    def add(self, event: ConnectorEvent) -> None:
        """Append an event; waiting consumers wake."""
        self._log.append(event)

    async def make(self, consumer_name: str) -> MemConnectorConsumer:
        """A consumer resuming at ``consumer_name``'s position."""
        return MemConnectorConsumer(Reader(self._log.group(consumer_name, from_latest=False)))


class MemConnectorConsumer:
    """Reads a :class:`MemConnector` under one name."""

    def __init__(self, reader: Reader[ConnectorEvent]) -> None:
        self._reader = reader

    async def recv(self) -> tuple[ConnectorEvent, Ack]:
        """Wait for the next event; cancellable."""
        position, event = await self._reader.next()

        async def ack() -> None:
            self._reader.ack(position)

        return event, ack

    async def close(self) -> None:
        """Close; un-acked events go back to the name. Safe twice."""
        self._reader.close()
