"""The :class:`~luno_wf.adapter.ShardedStreamer` contract (optional; no luno counterpart).

Subclass :class:`ShardedStreamerContract` and override ``make_streamer`` with a factory of
streamers that have ``new_shard_receiver``::

    class TestMyShardedStreamer(ShardedStreamerContract):
        @pytest.fixture
        def make_streamer(self) -> StreamerFactory:
            return factory_of(MyStreamer)

A shard receiver takes the events of its topic whose id modulo ``total`` is
``shard - 1``, and nothing else: each event reaches exactly one shard, in order, however
the shards' receivers come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import ClassVar

import pytest
import pytest_asyncio

from luno_wf import Event, EventReceiver, EventSender, EventStreamer, ShardedStreamer

from ._shared import unique, within_timeout
from .factory import StreamerFactory

__all__ = ["ShardedStreamerContract"]


class _Shards:
    """A sharded streamer plus what a test opened, closed after it."""

    def __init__(
        self,
        streamer: EventStreamer,
        sharded: ShardedStreamer,
        stack: contextlib.AsyncExitStack,
        timeout: timedelta,
    ) -> None:
        self.streamer = streamer
        self.sharded = sharded
        self._stack = stack
        self.timeout = timeout

    async def sender(self, topic: str) -> EventSender:
        sender = await self.streamer.new_sender(topic)
        self._stack.push_async_callback(sender.close)
        return sender

    async def receiver(self, topic: str, name: str, shard: int, total: int) -> EventReceiver:
        receiver = await self.sharded.new_shard_receiver(topic, name, shard=shard, total=total)
        self._stack.push_async_callback(receiver.close)
        return receiver

    async def plain(self, topic: str, name: str) -> EventReceiver:
        receiver = await self.streamer.new_receiver(topic, name)
        self._stack.push_async_callback(receiver.close)
        return receiver

    async def take_shard(
        self, receiver: EventReceiver, shard: int, total: int, what: str
    ) -> list[Event]:
        """Every event ``receiver`` hands out until none comes for a moment, each acked.

        Fails unless there is at least one, and all are of shard ``shard`` of ``total``.
        """
        event, ack = await within_timeout(receiver.recv(), self.timeout, what)
        await ack()
        events = [event]
        while True:
            try:
                async with asyncio.timeout(_QUIET_SECONDS):
                    event, ack = await receiver.recv()
            except TimeoutError:
                break
            await ack()
            events.append(event)
        assert all(e.id % total == shard - 1 for e in events), (what, [e.id for e in events])
        return events


_QUIET_SECONDS = 0.5  # no further event for this long: the receiver has handed out all


async def _send(sender: EventSender, topic: str, n: int, prefix: str) -> None:
    for i in range(n):
        await sender.send(f"{prefix}-{i}", 1, {"topic": topic})


class ShardedStreamerContract:
    """The conformance cases of a streamer with shard receivers. Override ``make_streamer``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.conformance]

    recv_timeout: ClassVar[timedelta] = timedelta(seconds=10)
    """How long a receiver may take to deliver an event that is there to deliver."""

    @pytest.fixture
    def make_streamer(self) -> StreamerFactory:
        """Override: return a factory of fresh streamers that are ShardedStreamers."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the make_streamer fixture to return a "
            "StreamerFactory of ShardedStreamers"
        )

    @pytest_asyncio.fixture
    async def shards(self, make_streamer: StreamerFactory) -> AsyncIterator[_Shards]:
        """A fresh streamer; what the test opens is closed after it."""
        async with make_streamer() as streamer, contextlib.AsyncExitStack() as stack:
            assert isinstance(streamer, ShardedStreamer), "the streamer is no ShardedStreamer"
            yield _Shards(streamer, streamer, stack, self.recv_timeout)

    @pytest.mark.asyncio
    async def test_each_event_reaches_exactly_its_shard_in_order(self, shards: _Shards) -> None:
        """Three shards of one topic: each gets its own events, in order, and together all."""
        topic, total = unique("sharded"), 3
        sender = await shards.sender(topic)
        await _send(sender, topic, 30, "e")  # 30 consecutive ids: ten in each shard
        everything: list[Event] = []
        for shard in range(1, total + 1):
            receiver = await shards.receiver(topic, unique(f"s{shard}"), shard, total)
            mine = await shards.take_shard(receiver, shard, total, f"shard {shard} of {total}")
            assert [e.id for e in mine] == sorted(e.id for e in mine), "not in order"
            everything += mine
        assert sorted(e.foreign_id for e in everything) == sorted(f"e-{i}" for i in range(30))

    @pytest.mark.asyncio
    async def test_a_shard_name_resumes_past_the_other_shards_events(self, shards: _Shards) -> None:
        """A name's position moves past the events it does not take.

        A new receiver of the name gets the shard's later events, none again, none skipped.
        """
        topic, name = unique("sharded"), unique("resume")
        sender = await shards.sender(topic)
        await _send(sender, topic, 10, "before")
        first = await shards.receiver(topic, name, 1, 2)
        taken = await shards.take_shard(first, 1, 2, "the first receiver")
        await first.close()
        await _send(sender, topic, 10, "after")
        second = await shards.receiver(topic, name, 1, 2)
        later = await shards.take_shard(second, 1, 2, "the second receiver")
        assert [e.foreign_id[:6] for e in taken] == ["before"] * 5
        assert [e.foreign_id[:5] for e in later] == ["after"] * 5

    @pytest.mark.asyncio
    async def test_receivers_of_one_shard_name_share_its_events(self, shards: _Shards) -> None:
        """Two receivers of one shard's name: its events, each to one of them."""
        topic, name = unique("sharded"), unique("shared")
        sender = await shards.sender(topic)
        receivers = [await shards.receiver(topic, name, 2, 2) for _ in range(2)]
        await _send(sender, topic, 20, "e")  # 20 consecutive ids: ten of shard 2
        got: list[Event] = []
        ten = asyncio.Event()

        async def drain(receiver: EventReceiver) -> None:
            while True:
                event, ack = await receiver.recv()
                await ack()
                got.append(event)
                if len(got) >= 10:
                    ten.set()

        tasks = [asyncio.create_task(drain(r)) for r in receivers]
        try:
            await within_timeout(ten.wait(), self.recv_timeout, "ten events of shard 2")
            await asyncio.sleep(_QUIET_SECONDS)  # and nothing more arrives
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        ids = [e.id for e in got]
        assert len(ids) == len(set(ids)) == 10, ids
        assert all(i % 2 == 1 for i in ids), ids

    @pytest.mark.asyncio
    async def test_a_plain_receiver_beside_shards_gets_every_event(self, shards: _Shards) -> None:
        """A name without a shard takes every event, whatever other names take."""
        topic = unique("sharded")
        sender = await shards.sender(topic)
        await shards.receiver(topic, unique("one"), 1, 2)
        plain = await shards.plain(topic, unique("plain"))
        await _send(sender, topic, 6, "e")
        events = []
        for i in range(6):
            event, ack = await within_timeout(plain.recv(), shards.timeout, f"event {i}")
            await ack()
            events.append(event.foreign_id)
        assert events == [f"e-{i}" for i in range(6)]

    @pytest.mark.asyncio
    @pytest.mark.parametrize(("shard", "total"), [(0, 2), (3, 2), (1, 0)])
    async def test_a_shard_outside_its_count_is_refused(
        self, shards: _Shards, shard: int, total: int
    ) -> None:
        """A shard must be in 1..total (and total at least 1): a ValueError naming it."""
        with pytest.raises(ValueError, match="shard"):
            await shards.sharded.new_shard_receiver(
                unique("sharded"), unique("bad"), shard=shard, total=total
            )
