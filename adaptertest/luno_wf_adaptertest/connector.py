"""The connector contract (luno's ``RunConnectorTest``).

Subclass :class:`ConnectorContract` and override ``make_connector``, which takes the seed
events and returns a factory of a :class:`~luno_wf.adapter.ConnectorConstructor` whose
consumers yield them::

    class TestMyConnector(ConnectorContract):
        @pytest.fixture
        def make_connector(self) -> ConnectorFactory:
            return factory_of(MyConnector)

The adapter may assign its own event ids and types (a Kafka connector uses offsets and the
topic name): the cases compare foreign ids, and ids only with themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
import pytest_asyncio

from luno_wf import ConnectorConstructor, ConnectorConsumer, ConnectorEvent

from ._shared import unique, within_timeout
from ._workflows import CONNECTOR_SEEDS, run_connector_case
from .factory import ConnectorFactory

__all__ = ["ConnectorContract"]

OpenConnector = Callable[[Sequence[ConnectorEvent]], Awaitable[ConnectorConstructor]]


def _seeds(n: int) -> list[ConnectorEvent]:
    now = datetime.now(UTC)
    return [
        ConnectorEvent(id=str(i + 1), foreign_id=unique(f"fid-{i}"), type="", created_at=now)
        for i in range(n)
    ]


class ConnectorContract:
    """The conformance cases of a connector. Override ``make_connector``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.conformance]

    recv_timeout: ClassVar[timedelta] = timedelta(seconds=10)
    """How long a consumer may take to deliver an event that is there to deliver."""
    cancel_timeout: ClassVar[timedelta] = timedelta(seconds=2)
    """How long a cancelled ``recv`` may take to return."""
    workflow_timeout: ClassVar[timedelta] = timedelta(seconds=30)
    """How long the whole-workflow case may take."""

    @pytest.fixture
    def make_connector(self) -> ConnectorFactory:
        """Override: return a factory of connectors over the given seed events."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the make_connector fixture to return a "
            "ConnectorFactory, e.g. factory_of(MyConnector)"
        )

    @pytest_asyncio.fixture
    async def open_connector(
        self, make_connector: ConnectorFactory
    ) -> AsyncIterator[OpenConnector]:
        """Awaited with seed events, opens a connector; closes them all after the test."""
        async with contextlib.AsyncExitStack() as stack:

            async def open_(seeds: Sequence[ConnectorEvent]) -> ConnectorConstructor:
                return await stack.enter_async_context(make_connector(seeds))

            yield open_

    async def _consumer(
        self, stack: contextlib.AsyncExitStack, connector: ConnectorConstructor, name: str
    ) -> ConnectorConsumer:
        consumer = await connector.make(name)
        stack.push_async_callback(consumer.close)
        return consumer

    async def _recv(self, consumer: ConnectorConsumer, what: str) -> ConnectorEvent:
        event, ack = await within_timeout(consumer.recv(), self.recv_timeout, what)
        await ack()
        return event

    # -- luno's case -------------------------------------------------------------------

    @pytest.mark.conformance_engine
    @pytest.mark.asyncio
    async def test_connector(self, open_connector: OpenConnector) -> None:
        """Each seed event triggers a run that the workflow moves on (luno's connector case)."""
        connector = await open_connector(CONNECTOR_SEEDS)
        await run_connector_case(connector, CONNECTOR_SEEDS, self.workflow_timeout)

    # -- extensions --------------------------------------------------------------------

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_delivers_every_event(self, open_connector: OpenConnector) -> None:
        """A consumer gets every seed event's foreign id once, with distinct ids."""
        seeds = _seeds(5)
        connector = await open_connector(seeds)
        async with contextlib.AsyncExitStack() as stack:
            consumer = await self._consumer(stack, connector, unique("consumer"))
            got = [await self._recv(consumer, f"event {i + 1} of 5") for i in range(5)]
        assert sorted(e.foreign_id for e in got) == sorted(s.foreign_id for s in seeds)
        assert len({e.id for e in got}) == 5, f"events share ids: {[e.id for e in got]}"
        for event in got:
            assert event.created_at.tzinfo is not None, f"naive created_at in {event!r}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_unacked_event_redelivered(self, open_connector: OpenConnector) -> None:
        """An event not acked before its consumer closed goes to the name's next consumer."""
        connector = await open_connector(_seeds(2))
        name = unique("consumer")
        async with contextlib.AsyncExitStack() as stack:
            first = await self._consumer(stack, connector, name)
            acked = await self._recv(first, "the first event")
            unacked, _ = await within_timeout(first.recv(), self.recv_timeout, "the second")
            await first.close()
            second = await self._consumer(stack, connector, name)
            again = await self._recv(second, "the un-acked event, again")
        assert again.foreign_id == unacked.foreign_id, (
            f"expected {unacked.foreign_id!r} again, got {again.foreign_id!r} "
            f"(acked before: {acked.foreign_id!r})"
        )
        assert again.id == unacked.id, "a redelivered event changed its id"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_consumer_names_are_independent(self, open_connector: OpenConnector) -> None:
        """Events acked under one consumer name are still delivered under another."""
        seeds = _seeds(3)
        connector = await open_connector(seeds)
        expected = sorted(s.foreign_id for s in seeds)
        async with contextlib.AsyncExitStack() as stack:
            for name in (unique("a"), unique("b")):
                consumer = await self._consumer(stack, connector, name)
                got = [(await self._recv(consumer, name)).foreign_id for _ in seeds]
                assert sorted(got) == expected, f"{name}: got {got}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_recv_cancelled_promptly(self, open_connector: OpenConnector) -> None:
        """A recv waiting past the last event ends at once when cancelled."""
        connector = await open_connector(_seeds(1))
        async with contextlib.AsyncExitStack() as stack:
            consumer = await self._consumer(stack, connector, unique("consumer"))
            await self._recv(consumer, "the only event")
            waiting = asyncio.create_task(consumer.recv())
            await asyncio.sleep(0.2)
            assert not waiting.done(), f"recv returned past the last event: {waiting}"
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await within_timeout(waiting, self.cancel_timeout, "the cancelled recv")

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_close_twice(self, open_connector: OpenConnector) -> None:
        """Closing a consumer twice is not an error."""
        connector = await open_connector(_seeds(1))
        consumer = await connector.make(unique("consumer"))
        await self._recv(consumer, "the only event")
        await consumer.close()
        await consumer.close()
