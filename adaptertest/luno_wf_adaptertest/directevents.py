"""The :class:`~luno_wf.adapter.DirectEvents` contract: a record store writing events itself.

A record store that can append each write's event to a streamer's log (rather than an
outbox row for the publisher) subclasses :class:`DirectEventsContract` and overrides
``make_pair``::

    class TestMyDirectEvents(DirectEventsContract):
        @pytest.fixture
        def make_pair(self) -> DirectEventsFactory:
            return my_store_and_streamer_factory

Each case registers a workflow of its own with ``publishes_events`` and checks what a
receiver of the streamer sees: the event of every write and of nothing else, with exactly
the headers the outbox publisher would have sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import ClassVar

import pytest
import pytest_asyncio

from luno_wf import (
    BatchStore,
    DirectEvents,
    Event,
    EventStreamer,
    Record,
    RecordStore,
    RunState,
    decode_outbox_data,
    outbox_data,
    run_state_change_topic,
    topic,
)
from luno_wf.errors import StaleRecord, WorkflowInProgress
from luno_wf.memory import MemStreamer

from ._shared import Status, bump, dummy_wire_record, unique, within_timeout
from .factory import DirectEventsFactory

__all__ = ["DirectEventsContract"]

Pair = tuple[RecordStore, EventStreamer]


async def _received(streamer: EventStreamer, topic_name: str, n: int) -> list[Event]:
    """The first ``n`` events of the topic (a new receiver name reads it from the start)."""
    receiver = await streamer.new_receiver(topic_name, unique("direct-events"))
    try:
        out: list[Event] = []
        for _ in range(n):
            event, ack = await within_timeout(
                receiver.recv(), timedelta(seconds=10), f"event {len(out) + 1} of {n}"
            )
            await ack()
            out.append(event)
        return out
    finally:
        await receiver.close()


def _announces(event: Event, record: Record) -> None:
    """Fail unless ``event`` is what the outbox publisher would send for ``record``."""
    expected = outbox_data(record)
    assert event.foreign_id == record.run_id, f"foreign id {event.foreign_id!r}: not the run id"
    assert event.type == record.status, f"type {event.type}, expected {record.status}"
    assert event.headers == expected.headers, (
        f"headers {event.headers!r}, the outbox would send {expected.headers!r}"
    )


class DirectEventsContract:
    """The conformance cases of a store writing events itself. Override ``make_pair``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.conformance]

    @pytest.fixture
    def make_pair(self) -> DirectEventsFactory:
        """Override: a factory of a fresh record store and the streamer it writes to."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the make_pair fixture to return a "
            "DirectEventsFactory"
        )

    @pytest_asyncio.fixture
    async def pair(self, make_pair: DirectEventsFactory) -> AsyncIterator[Pair]:
        """A fresh store and its streamer from ``make_pair``, closed after the test."""
        async with make_pair() as pair:
            yield pair

    @staticmethod
    def register(pair: Pair) -> str:
        """A workflow name of the test's own, whose events the store writes itself."""
        store, streamer = pair
        assert isinstance(store, DirectEvents), "the store is not a DirectEvents"
        name = unique("direct")
        assert store.publishes_events(name, streamer), "the store refused its own streamer"
        return name

    @pytest.mark.asyncio
    async def test_publishes_only_to_its_streamer(self, pair: Pair) -> None:
        """It takes its own streamer, and answers False for another (a memory streamer)."""
        store, _ = pair
        self.register(pair)
        assert isinstance(store, DirectEvents)
        assert not store.publishes_events(unique("elsewhere"), MemStreamer())

    @pytest.mark.asyncio
    async def test_each_write_appends_its_event_and_no_outbox_row(self, pair: Pair) -> None:
        """Each write appends the event the outbox publisher would have sent, no outbox row.

        A new run, its update and its completion: same topic, foreign id, type and headers.
        """
        store, streamer = pair
        wf = self.register(pair)
        started = dummy_wire_record(wf)
        middle = bump(started, status=Status.MIDDLE, run_state=RunState.RUNNING)
        done = bump(middle, status=Status.END, run_state=RunState.COMPLETED)
        for record in (started, middle, done):
            await store.store(record)

        (first,) = await _received(streamer, topic(wf, Status.STARTED), 1)
        _announces(first, started)
        (second,) = await _received(streamer, topic(wf, Status.MIDDLE), 1)
        _announces(second, middle)
        (last,) = await _received(streamer, run_state_change_topic(wf), 1)
        _announces(last, done)
        assert await store.list_outbox_events(wf, 100) == [], "an outbox row was written too"

    @pytest.mark.asyncio
    async def test_refused_writes_append_nothing(self, pair: Pair) -> None:
        """A stale update and a second unfinished run of a foreign id write no event.

        Each topic's events are those of the writes that went through, and no others.
        """
        store, streamer = pair
        wf = self.register(pair)
        run = dummy_wire_record(wf)
        await store.store(run)
        with pytest.raises(StaleRecord):
            await store.store(bump(bump(run), status=Status.MIDDLE))  # skips a version
        with pytest.raises(WorkflowInProgress):
            await store.store(dummy_wire_record(wf, foreign_id=run.foreign_id))
        moved = bump(run, status=Status.MIDDLE, run_state=RunState.RUNNING)
        await store.store(moved)

        (only,) = await _received(streamer, topic(wf, Status.MIDDLE), 1)
        _announces(only, moved)
        (first,) = await _received(streamer, topic(wf, Status.STARTED), 1)
        _announces(first, run)
        # Nothing else was appended to either topic.
        more = await streamer.new_receiver(topic(wf, Status.STARTED), unique("direct-more"))
        try:
            await more.recv()  # the trigger's event, again, for this new name
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await more.recv()
        finally:
            await more.close()

    @pytest.mark.asyncio
    async def test_store_many_appends_the_events_of_the_writes_it_made(self, pair: Pair) -> None:
        """``store_many`` (optional) appends the events of the records it stored.

        In the order given, and none for a refused record.
        """
        store, streamer = pair
        if not isinstance(store, BatchStore):
            pytest.skip("the store has no store_many (optional BatchStore)")
        wf = self.register(pair)
        runs = [dummy_wire_record(wf, foreign_id=f"batch {i}") for i in range(4)]
        for run in runs:
            await store.store(run)
        moved = [bump(r, status=Status.MIDDLE, run_state=RunState.RUNNING) for r in runs]
        stale = bump(moved[1])  # skips version 2
        batch = [moved[0], stale, moved[2], moved[3]]

        outcomes = await store.store_many(batch)

        assert outcomes[0] is None and outcomes[2] is None and outcomes[3] is None, outcomes
        assert isinstance(outcomes[1], StaleRecord), outcomes
        events = await _received(streamer, topic(wf, Status.MIDDLE), 3)
        for event, record in zip(events, [moved[0], moved[2], moved[3]], strict=True):
            _announces(event, record)

    @pytest.mark.asyncio
    async def test_other_workflows_keep_the_outbox(self, pair: Pair) -> None:
        """A workflow the store was not asked about still gets outbox rows.

        Their payload announces what the direct event of the same write announces.
        """
        store, streamer = pair
        direct = self.register(pair)
        plain = unique("outboxed")
        run = dummy_wire_record(plain)
        await store.store(run)
        rows = await store.list_outbox_events(plain, 10)
        assert len(rows) == 1, f"one outbox row expected, got {rows!r}"
        payload = decode_outbox_data(rows[0].data)
        assert payload.headers == outbox_data(run).headers

        twin = dummy_wire_record(direct)
        await store.store(twin)
        (event,) = await _received(streamer, topic(direct, Status.STARTED), 1)
        _announces(event, twin)
        expected = {**payload.headers, "workflow_name": direct, "run_id": twin.run_id}
        expected["topic"] = topic(direct, Status.STARTED)
        expected["foreign_id"] = twin.foreign_id
        assert event.headers == expected, "the direct event differs from the outbox payload"
