"""A Hypothesis state machine: delivery guarantees of an event streamer.

Random sends to two topics, receives under two names, acks (oldest first, as a cursor
advances) and receiver restarts. The model knows, per topic and name, which events were
acked and which are in flight with the open receiver; every received event must be the
earliest one not yet acked nor in flight (per foreign id for partitioned streamers). That
is: events arrive in send order, un-acked ones come back after a restart, acked ones never
do. Teardown drains every name used, so each gets every event at least once.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from luno_wf import Ack, EventReceiver, EventSender, EventStreamer

from ._harness import Harness
from ._shared import within_timeout
from .factory import StreamerFactory

__all__ = ["StreamerMachine", "run_machine"]

KEYS = ("k0", "k1", "k2")


@attrs.define
class _Sent:
    seq: int
    foreign_id: str
    type: int
    headers: dict[str, str]


@attrs.define
class _Cursor:
    """What one name has seen of one topic."""

    receiver: EventReceiver | None = None
    acked: set[int] = attrs.field(factory=set)
    in_flight: list[tuple[int, Ack]] = attrs.field(factory=list)
    ever: set[int] = attrs.field(factory=set)


async def _call(ack: Ack) -> None:
    await ack()


class StreamerMachine(RuleBasedStateMachine):
    """Drives one streamer and checks each delivery against the model."""

    def __init__(
        self, factory: StreamerFactory, recv_timeout: timedelta, order_per_key: bool
    ) -> None:
        super().__init__()
        self.harness: Harness[EventStreamer] = Harness(factory)
        self.recv_timeout = recv_timeout
        self.order_per_key = order_per_key
        suffix = uuid.uuid4().hex[:12]
        self.topics = [f"machine-{i}-{suffix}" for i in range(2)]
        self.names = [f"name-{i}-{suffix}" for i in range(2)]
        self.senders: dict[str, EventSender] = {}
        self.sent: dict[str, list[_Sent]] = {t: [] for t in self.topics}
        self.cursors: dict[tuple[str, str], _Cursor] = {}

    def _cursor(self, topic: str, name: str) -> _Cursor:
        return self.cursors.setdefault((topic, name), _Cursor())

    def _available(self, topic: str, cursor: _Cursor) -> list[_Sent]:
        in_flight = {seq for seq, _ in cursor.in_flight}
        return [s for s in self.sent[topic] if s.seq not in cursor.acked | in_flight]

    @rule(topic=st.integers(0, 1), key=st.sampled_from(KEYS), type=st.integers(1, 5))
    def send(self, topic: int, key: str, type: int) -> None:
        """Send an event."""
        name = self.topics[topic]
        if name not in self.senders:
            self.senders[name] = self.harness.run(self.harness.adapter.new_sender(name))
        seq = sum(len(v) for v in self.sent.values())
        sent = _Sent(seq, key, type, {"topic": name, "seq": str(seq)})
        self.harness.run(self.senders[name].send(sent.foreign_id, sent.type, sent.headers))
        self.sent[name].append(sent)

    def _has_news(self, topic: str, name: str) -> bool:
        """Whether an event of ``topic`` was never delivered to ``name``.

        Receiving only then means a lost event shows up as a later one arriving out of
        turn, never as a wait for an event that will not come.
        """
        return len(self._cursor(topic, name).ever) < len(self.sent[topic])

    def _can_recv(self) -> bool:
        return any(self._has_news(t, n) for t in self.topics for n in self.names)

    @precondition(_can_recv)
    @rule(data=st.data())
    def recv(self, data: st.DataObject) -> None:
        """Receive on a topic and name that have an event never delivered to that name."""
        pairs = [(t, n) for t in self.topics for n in self.names if self._has_news(t, n)]
        topic, name = data.draw(st.sampled_from(pairs), label="topic, name")
        self._recv(topic, name)

    def _recv(self, topic: str, name: str) -> None:
        cursor = self._cursor(topic, name)
        if cursor.receiver is None:
            adapter = self.harness.adapter
            cursor.receiver = self.harness.run(adapter.new_receiver(topic, name))
        what = f"recv on {topic!r} as {name!r}"
        event, ack = self.harness.run(
            within_timeout(cursor.receiver.recv(), self.recv_timeout, what)
        )
        seq = int(event.headers.get("seq", "-1"))
        sent = {s.seq: s for s in self.sent[topic]}.get(seq)
        assert sent is not None, f"{what}: got an event not sent to this topic: {event!r}"
        assert (event.foreign_id, event.type, event.headers) == (
            sent.foreign_id,
            sent.type,
            sent.headers,
        ), f"{what}: event {event!r} differs from what was sent: {sent!r}"
        assert seq not in cursor.acked, f"{what}: event {seq} delivered again after its ack"
        in_flight = [s for s, _ in cursor.in_flight]
        assert seq not in in_flight, f"{what}: event {seq} delivered twice to one receiver"
        candidates = self._available(topic, cursor)
        if self.order_per_key:
            candidates = [s for s in candidates if s.foreign_id == sent.foreign_id]
        expected = candidates[0].seq
        assert seq == expected, (
            f"{what}: got event {seq}, expected {expected} (acked {sorted(cursor.acked)}, "
            f"in flight {in_flight}): out of order, or an un-acked event was lost"
        )
        cursor.in_flight.append((seq, ack))
        cursor.ever.add(seq)

    @precondition(lambda self: any(c.in_flight for c in self.cursors.values()))
    @rule(data=st.data())
    def ack_oldest(self, data: st.DataObject) -> None:
        """Ack the oldest event in flight on a topic and name."""
        pairs = sorted(k for k, c in self.cursors.items() if c.in_flight)
        cursor = self.cursors[data.draw(st.sampled_from(pairs), label="topic, name")]
        seq, ack = cursor.in_flight.pop(0)
        self.harness.run(_call(ack))
        cursor.acked.add(seq)

    @precondition(lambda self: any(c.receiver for c in self.cursors.values()))
    @rule(data=st.data(), twice=st.booleans())
    def restart(self, data: st.DataObject, twice: bool) -> None:
        """Close a receiver (maybe twice); its un-acked events are due again."""
        pairs = sorted(k for k, c in self.cursors.items() if c.receiver is not None)
        cursor = self.cursors[data.draw(st.sampled_from(pairs), label="topic, name")]
        assert cursor.receiver is not None
        self.harness.run(cursor.receiver.close())
        if twice:
            self.harness.run(cursor.receiver.close())
        cursor.receiver = None
        cursor.in_flight.clear()

    def teardown(self) -> None:
        """Drain every name used, then close everything."""
        try:
            # One more event per topic: an event lost at the end of a topic shows up as
            # this one arriving out of turn, rather than as a wait for the timeout.
            for topic in sorted({topic for topic, _ in self.cursors}):
                self.send(self.topics.index(topic), KEYS[0], 1)
            for (topic, name), cursor in sorted(self.cursors.items()):
                while len(cursor.ever) < len(self.sent[topic]):
                    self._recv(topic, name)
                    seq, ack = cursor.in_flight.pop(0)
                    self.harness.run(_call(ack))
                    cursor.acked.add(seq)
        finally:
            try:
                for cursor in self.cursors.values():
                    if cursor.receiver is not None:
                        self.harness.run(cursor.receiver.close())
                for sender in self.senders.values():
                    self.harness.run(sender.close())
            finally:
                self.harness.close()


def run_machine(
    factory: StreamerFactory,
    hypothesis_settings: settings,
    *,
    recv_timeout: timedelta,
    order_per_key: bool,
) -> None:
    """Run the machine against streamers from ``factory``."""

    class Bound(StreamerMachine):
        def __init__(self) -> None:
            super().__init__(factory, recv_timeout, order_per_key)

    run_state_machine_as_test(Bound, settings=hypothesis_settings)
