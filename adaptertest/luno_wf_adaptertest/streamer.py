"""The :class:`~luno_wf.adapter.EventStreamer` contract (luno's ``RunEventStreamerTest``).

Subclass :class:`EventStreamerContract` and override ``make_streamer``::

    class TestMyStreamer(EventStreamerContract):
        @pytest.fixture
        def make_streamer(self) -> StreamerFactory:
            return factory_of(MyStreamer)

Topic and receiver names carry a random suffix, so streamers over a shared broker do not see
earlier tests' events. Waits are bounded by :attr:`EventStreamerContract.recv_timeout`;
raise it for brokers that are slow to assign a consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import ClassVar

import pytest
import pytest_asyncio

from luno_wf import (
    Ack,
    BatchReceiver,
    BatchSender,
    Event,
    EventReceiver,
    EventSender,
    EventStreamer,
)

from ._shared import assert_within, unique, utcnow, within_timeout
from ._workflows import run_acceptance
from .factory import StreamerFactory
from .profiles import StatefulCases

__all__ = ["EventStreamerContract", "Streams"]


class Streams:
    """A streamer plus the senders and receivers a test opened, all closed after it."""

    def __init__(
        self, streamer: EventStreamer, stack: contextlib.AsyncExitStack, recv_timeout: timedelta
    ) -> None:
        self.streamer = streamer
        self._stack = stack
        self._recv_timeout = recv_timeout

    async def sender(self, topic: str) -> EventSender:
        """A sender of ``topic``, closed after the test."""
        sender = await self.streamer.new_sender(topic)
        self._stack.push_async_callback(sender.close)
        return sender

    async def receiver(
        self, topic: str, name: str, *, stream_from_latest: bool = False
    ) -> EventReceiver:
        """A receiver of ``topic`` under ``name``, closed (again) after the test."""
        receiver = await self.streamer.new_receiver(
            topic, name, stream_from_latest=stream_from_latest
        )
        self._stack.push_async_callback(receiver.close)
        return receiver

    async def recv(self, receiver: EventReceiver, what: str) -> tuple[Event, Ack]:
        """The receiver's next event; fails if none comes within the timeout."""
        return await within_timeout(receiver.recv(), self._recv_timeout, what)

    async def recv_ids(self, receiver: EventReceiver, n: int, what: str) -> list[Event]:
        """The next ``n`` events, each acked."""
        events = []
        for i in range(n):
            event, ack = await self.recv(receiver, f"{what} (event {i + 1} of {n})")
            await ack()
            events.append(event)
        return events


class EventStreamerContract(StatefulCases):
    """The conformance cases of an event streamer. Override ``make_streamer``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.conformance]

    recv_timeout: ClassVar[timedelta] = timedelta(seconds=10)
    """How long a receiver may take to deliver an event that is there to deliver."""
    cancel_timeout: ClassVar[timedelta] = timedelta(seconds=2)
    """How long a cancelled ``recv`` may take to return."""
    workflow_timeout: ClassVar[timedelta] = timedelta(seconds=30)
    """How long the acceptance workflow may take to finish."""
    order_per_key: ClassVar[bool] = False
    """Only require send order per foreign id (a partitioned topic), not per topic."""

    @pytest.fixture
    def make_streamer(self) -> StreamerFactory:
        """Override: return a factory of fresh streamers (see :mod:`.factory`)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the make_streamer fixture to return a "
            "StreamerFactory, e.g. factory_of(MyStreamer)"
        )

    @pytest_asyncio.fixture
    async def streams(self, make_streamer: StreamerFactory) -> AsyncIterator[Streams]:
        """A fresh streamer from ``make_streamer``; what the test opens is closed after it."""
        async with make_streamer() as streamer, contextlib.AsyncExitStack() as stack:
            yield Streams(streamer, stack, self.recv_timeout)

    # -- luno's cases ------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_stream_from_latest(self, streams: Streams) -> None:
        """StreamFromLatest skips earlier events unless the name has a position (luno)."""
        topic, name = unique("test-1"), unique("my-receiver")
        sender = await streams.sender(topic)
        await sender.send("123", 4, {"topic": topic})
        await sender.send("456", 5, {"topic": topic})
        receiver = await streams.receiver(topic, name, stream_from_latest=True)

        # "Should only receive events that come in after connecting"
        await sender.send("789", 5, {"topic": topic})
        event, ack = await streams.recv(receiver, "the event sent after connecting")
        assert event.foreign_id == "789", f"expected '789', got {event.foreign_id!r}"
        await ack()
        await receiver.close()  # closed again after the test: must not fail

        # "StreamFromLatest should have no effect when offset is committed"
        await sender.send("101", 5, {"topic": topic})
        second = await streams.receiver(topic, name, stream_from_latest=True)
        event, ack = await streams.recv(second, "the event after the committed position")
        assert event.foreign_id == "101", f"expected '101', got {event.foreign_id!r}"
        await ack()

    @pytest.mark.conformance_engine
    @pytest.mark.asyncio
    async def test_acceptance_full_workflow_run_through(self, streams: Streams) -> None:
        """Steps, a timeout and five shards per step run a workflow to the end (luno)."""
        await run_acceptance(streams.streamer, self.workflow_timeout)

    # -- extensions (spec §5.7) --------------------------------------------------------

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_event_carries_what_was_sent(self, streams: Streams) -> None:
        """An event has the sent foreign id, type and headers, and its publication time."""
        topic = unique("fields")
        sender = await streams.sender(topic)
        headers = {"topic": topic, "workflow_name": "w", "record_version": "3", "é": "ü"}
        await sender.send("run-1", 7, headers)
        receiver = await streams.receiver(topic, unique("r"))
        event, ack = await streams.recv(receiver, "the sent event")
        await ack()
        assert (event.foreign_id, event.type) == ("run-1", 7)
        assert event.headers == headers, f"headers {event.headers!r} != {headers!r}"
        assert isinstance(event.id, int), f"event id {event.id!r} is not an int"
        assert_within(event.created_at, utcnow(), "event.created_at")

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_send_order_within_topic(self, streams: Streams) -> None:
        """A receiver gets a topic's events in the order they were sent."""
        topic = unique("order")
        sender = await streams.sender(topic)
        sent = [(f"key-{i % 3}", str(i)) for i in range(30)]
        for key, seq in sent:
            await sender.send(key, 1, {"topic": topic, "seq": seq})
        receiver = await streams.receiver(topic, unique("r"))
        got = [
            (e.foreign_id, e.headers["seq"]) for e in await streams.recv_ids(receiver, 30, topic)
        ]
        if self.order_per_key:
            for key in {k for k, _ in sent}:
                assert [s for k, s in got if k == key] == [s for k, s in sent if k == key]
        else:
            assert got == sent, f"events out of send order: {[s for _, s in got]}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_topics_and_names_are_independent(self, streams: Streams) -> None:
        """Topics do not mix, and each name on a topic has its own position."""
        topic_a, topic_b = unique("topic-a"), unique("topic-b")
        n1, n2 = unique("name-1"), unique("name-2")
        a, b = await streams.sender(topic_a), await streams.sender(topic_b)
        await a.send("a1", 1, {"topic": topic_a})
        await b.send("b1", 2, {"topic": topic_b})
        await a.send("a2", 1, {"topic": topic_a})

        async def foreign_ids(topic: str, name: str, n: int) -> list[str]:
            receiver = await streams.receiver(topic, name)
            return [e.foreign_id for e in await streams.recv_ids(receiver, n, f"{topic}/{name}")]

        assert await foreign_ids(topic_a, n1, 2) == ["a1", "a2"]
        assert await foreign_ids(topic_a, n2, 2) == ["a1", "a2"], "names share a position"
        assert await foreign_ids(topic_b, n1, 1) == ["b1"], "topics share a position"
        # Nothing else was waiting on topic B: the next event is the one sent now.
        await b.send("b2", 2, {"topic": topic_b})
        assert await foreign_ids(topic_b, n1, 1) == ["b2"]

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_same_event_id_for_every_receiver(self, streams: Streams) -> None:
        """Every receiver of an event sees the same id; different events differ."""
        topic = unique("ids")
        sender = await streams.sender(topic)
        for fid in ("x", "y", "z"):
            await sender.send(fid, 1, {"topic": topic})
        seen = []
        for _ in range(3):
            receiver = await streams.receiver(topic, unique("r"))
            seen.append([e.id for e in await streams.recv_ids(receiver, 3, topic)])
        assert seen[0] == seen[1] == seen[2], f"ids differ between receivers: {seen}"
        assert len(set(seen[0])) == 3, f"different events share an id: {seen[0]}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_unacked_events_redelivered(self, streams: Streams) -> None:
        """An event not acked before its receiver closed goes to the name's next receiver."""
        topic, name = unique("redeliver"), unique("r")
        sender = await streams.sender(topic)
        for fid in ("e1", "e2", "e3"):
            await sender.send(fid, 1, {"topic": topic})
        first = await streams.receiver(topic, name)
        event, ack = await streams.recv(first, "e1")
        assert event.foreign_id == "e1"
        await ack()
        unacked, _ = await streams.recv(first, "e2")
        assert unacked.foreign_id == "e2"
        await first.close()

        second = await streams.receiver(topic, name)
        again, ack = await streams.recv(second, "e2 redelivered")
        assert again.foreign_id == "e2", f"expected e2 again, got {again.foreign_id!r}"
        assert again.id == unacked.id, "a redelivered event changed its id"
        await ack()
        event, ack = await streams.recv(second, "e3")
        assert event.foreign_id == "e3", f"expected e3, got {event.foreign_id!r}"
        await ack()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_recv_cancelled_promptly(self, streams: Streams) -> None:
        """A waiting recv ends at once when cancelled, and loses no event."""
        topic, name = unique("cancel"), unique("r")
        receiver = await streams.receiver(topic, name)
        waiting = asyncio.create_task(receiver.recv())
        await asyncio.sleep(0.2)
        assert not waiting.done(), f"recv returned with nothing sent: {waiting}"
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await within_timeout(waiting, self.cancel_timeout, "the cancelled recv")
        await receiver.close()

        sender = await streams.sender(topic)
        await sender.send("after", 1, {"topic": topic})
        receiver = await streams.receiver(topic, name)
        event, ack = await streams.recv(receiver, "the event sent after the cancellation")
        assert event.foreign_id == "after"
        await ack()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_close_twice(self, streams: Streams) -> None:
        """Closing a sender or a receiver twice is not an error."""
        topic = unique("close")
        sender = await streams.streamer.new_sender(topic)
        await sender.send("x", 1, {"topic": topic})
        await sender.close()
        await sender.close()
        receiver = await streams.streamer.new_receiver(topic, unique("r"))
        _, ack = await streams.recv(receiver, "x")
        await ack()
        await receiver.close()
        await receiver.close()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_receivers_of_one_name_share_the_work(self, streams: Streams) -> None:
        """Two open receivers of one name together get every event."""
        topic, name = unique("shared"), unique("r")
        sender = await streams.sender(topic)
        sent = {f"e{i}" for i in range(10)}
        for fid in sorted(sent):
            await sender.send(fid, 1, {"topic": topic})
        receivers = [await streams.receiver(topic, name) for _ in range(2)]
        got: set[str] = set()
        done = asyncio.Event()

        async def drain(receiver: EventReceiver) -> None:
            while True:
                event, ack = await receiver.recv()
                got.add(event.foreign_id)
                await ack()
                if got >= sent:
                    done.set()

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(drain(r)) for r in receivers]
            try:
                await within_timeout(done.wait(), self.recv_timeout, "every event")
            finally:
                for task in tasks:
                    task.cancel()
        assert got == sent

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_send_many(self, streams: Streams) -> None:
        """``send_many`` (optional) publishes every event, in order, as ``send`` would."""
        topic = unique("batch")
        sender = await streams.sender(topic)
        if not isinstance(sender, BatchSender):
            pytest.skip("the sender has no send_many (optional BatchSender)")
        batch = [(f"key-{i % 2}", i + 1, {"topic": topic, "seq": str(i)}) for i in range(6)]
        await sender.send_many(batch)
        await sender.send("last", 9, {"topic": topic, "seq": "6"})
        receiver = await streams.receiver(topic, unique("r"))
        got = [
            (e.foreign_id, e.type, e.headers)
            for e in await streams.recv_ids(receiver, 7, "the batch and one more")
        ]
        expected = [*batch, ("last", 9, {"topic": topic, "seq": "6"})]
        if self.order_per_key:
            got.sort(key=lambda e: int(e[2]["seq"]))
        assert got == expected, f"got {got}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_recv_many(self, streams: Streams) -> None:
        """``recv_many`` (optional) hands out events in order, each acked on its own."""
        topic = unique("many")
        name = unique("r")
        sender = await streams.sender(topic)
        receiver = await streams.receiver(topic, name)
        if not isinstance(receiver, BatchReceiver):
            pytest.skip("the receiver has no recv_many (optional BatchReceiver)")
        for i in range(5):
            await sender.send("key", i + 1, {"topic": topic, "seq": str(i)})
        got: list[tuple[Event, Ack]] = []
        while len(got) < 5:
            batch = await within_timeout(
                receiver.recv_many(3), self.recv_timeout, "a batch of the five events"
            )
            assert 1 <= len(batch) <= 3, f"recv_many(3) returned {len(batch)} events"
            got.extend(batch)
        assert [int(e.headers["seq"]) for e, _ in got] == [0, 1, 2, 3, 4]
        for event, ack in got:
            if event.headers["seq"] != "3":
                await ack()
        await receiver.close()
        again = await streams.receiver(topic, name)
        event, _ = await streams.recv(again, "the one un-acked event, redelivered")
        assert event.headers["seq"] == "3"

    # -- Hypothesis state machine ------------------------------------------------------

    @pytest.mark.conformance_stateful
    def test_stateful_delivery(
        self, make_streamer: StreamerFactory, request: pytest.FixtureRequest
    ) -> None:
        """Each name gets every event at least once, in send order, never after its ack."""
        from ._streamer_machine import run_machine

        run_machine(
            make_streamer,
            self._stateful_settings(request),
            recv_timeout=self.recv_timeout,
            order_per_key=self.order_per_key,
        )
