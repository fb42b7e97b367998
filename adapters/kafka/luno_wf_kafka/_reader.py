"""One consumer-group member reading one topic, acked message by message.

Both the streamer's receivers and the connector's consumers are built on it.

Invariants:

* Auto-commit is off. The only offsets ever committed are :class:`PartitionOffsets`
  prefixes: one past the longest acked prefix of what this member handed out. So closing
  with events in flight, or crashing, leaves them to be redelivered to the group.
* Per partition, the state is tied to one holding of it (a *generation*). After a
  rebalance the fetch position restarts at the committed offset. A partition that stays
  with this reader through the rebalance keeps its state: messages it already handed out
  are skipped as they come again, and acks of events in flight still count. A partition
  that went to another member and came back starts afresh: acks of events handed out
  before are ignored (those events come again).
* Acks never wait for the broker: they update the prefix and wake a commit task owned by
  the reader, which coalesces whatever is ready into one commit. Closing stops that task,
  then commits what was acked before leaving the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError

from luno_wf import Ack

from ._offsets import PartitionOffsets
from ._retry import Backoff, is_transient, retry_transient
from .errors import KafkaUnavailable

__all__ = ["GroupReader", "ReaderHandle"]

logger = logging.getLogger("luno_wf_kafka")

_generations = itertools.count(1)


async def _reap(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it, without swallowing a cancellation of our own."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, reader: GroupReader) -> None:
        self._reader = reader

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        await self._reader._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        self._reader._assigned(assigned)


class GroupReader:
    """Reads ``topic`` as a member of consumer group ``group``.

    Args:
        make_consumer: Makes a new, unstarted consumer of the group (auto-commit off).
        topic: The topic to subscribe to.
        group: The consumer group, for messages.
        anchor_latest: When a partition is assigned and the group has no committed offset
            for it, commit the consumer's starting position at once, so that "latest" means
            the end of the partition when this reader started, for every later member too.
        retry_timeout: How long transient broker errors are retried before giving up.
        commit_interval: Wait this long after an ack before committing, to coalesce more.

    """

    def __init__(
        self,
        *,
        make_consumer: Callable[[], Any],
        topic: str,
        group: str,
        anchor_latest: bool,
        retry_timeout: timedelta,
        commit_interval: timedelta,
    ) -> None:
        self._make_consumer = make_consumer
        self.topic = topic
        self.group = group
        self._anchor_latest = anchor_latest
        self._retry_timeout = retry_timeout
        self._commit_interval = commit_interval.total_seconds()
        self._consumer: Any = None
        self._buffer: deque[Any] = deque()
        self._parts: dict[Any, tuple[int, PartitionOffsets]] = {}
        # Partitions revoked by a rebalance still in progress, in case they come back.
        self._parked: dict[Any, tuple[int, PartitionOffsets]] = {}
        self._to_commit: dict[Any, int] = {}
        self._unanchored: set[Any] = set()
        self._joined = asyncio.Event()
        # Given back by a closed handle while others stay open: (tp, generation, record).
        self._redeliver: list[tuple[Any, int, Any]] = []
        self._handles = 0
        self._commit_wake = asyncio.Event()
        self._commit_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    def _describe(self) -> str:
        return f"consumer of topic {self.topic!r} in group {self.group!r}"

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group and wait for the first assignment (which may be empty).

        Raises:
            KafkaUnavailable: The brokers could not be reached within ``retry_timeout``.

        """

        async def start_once() -> Any:
            consumer = self._make_consumer()
            consumer.subscribe([self.topic], listener=_Listener(self))
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            return consumer

        self._consumer = await retry_transient(
            start_once, what=f"starting {self._describe()}", give_up_after=self._retry_timeout
        )
        try:
            try:
                async with asyncio.timeout(self._retry_timeout.total_seconds()):
                    await self._joined.wait()
            except TimeoutError:
                raise KafkaUnavailable(
                    f"{self._describe()} got no partition assignment within "
                    f"{self._retry_timeout.total_seconds():g} s (retry_timeout)"
                ) from None
            await self._anchor()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Commit what was acked, leave the group; events in flight will be redelivered.

        Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        consumer, self._consumer = self._consumer, None
        try:
            if self._commit_task is not None:
                await _reap(self._commit_task)
            if consumer is not None and self._to_commit:
                try:
                    await self._commit_once(consumer)
                except Exception as exc:
                    logger.warning("final commit of %s failed: %r", self._describe(), exc)
        finally:
            self._buffer.clear()
            if consumer is not None:
                await consumer.stop()

    # -- rebalance callbacks (run by aiokafka's coordinator) -------------------------------

    def _assigned(self, assigned: set[Any]) -> None:
        parked, self._parked = self._parked, {}
        for tp in assigned:
            kept = parked.get(tp)
            if kept is not None:
                # Ours before the rebalance and ours again: events in flight stay valid and
                # their acks still count. Fetching restarts at the committed offset; what
                # this reader already handed out is skipped as it comes again.
                self._parts[tp] = kept
                if kept[1].committable is not None:
                    self._to_commit[tp] = kept[1].committable  # acks taken while parked
                    self._wake_committer()
                continue
            self._parts[tp] = (next(_generations), PartitionOffsets())
            if self._anchor_latest:
                self._unanchored.add(tp)
        self._joined.set()

    async def _revoked(self, revoked: set[Any]) -> None:
        # Commit what was acked before another member takes over, then forget the partitions.
        pending = {tp: self._to_commit[tp] for tp in revoked if tp in self._to_commit}
        if pending and self._consumer is not None:
            try:
                await self._consumer.commit(pending)
            except Exception as exc:
                logger.info("commit on revocation by %s failed: %r", self._describe(), exc)
        for tp in revoked:
            entry = self._parts.pop(tp, None)
            if entry is not None:
                self._parked[tp] = entry
            self._to_commit.pop(tp, None)
            self._unanchored.discard(tp)
        gone = set(revoked)
        self._buffer = deque(
            r for r in self._buffer if TopicPartition(r.topic, r.partition) not in gone
        )

    async def _anchor(self) -> None:
        """Commit the starting position of newly assigned partitions the group never committed."""
        consumer = self._consumer
        while self._unanchored and consumer is not None:
            tp = next(iter(self._unanchored))
            try:
                if await consumer.committed(tp) is None:
                    position = await consumer.position(tp)
                    await consumer.commit({tp: position})
            except IllegalStateError:
                pass  # revoked meanwhile: whoever holds it now anchors it
            self._unanchored.discard(tp)

    # -- reading --------------------------------------------------------------------------

    async def next(self) -> tuple[Any, Ack]:
        """Wait for the next message (cancellable); returns it with its ack.

        Raises:
            RuntimeError: The reader is closed.
            KafkaUnavailable: Fetching kept failing for longer than ``retry_timeout``.

        """
        # Yield once even when a message is buffered, so a busy caller cannot starve the loop.
        await asyncio.sleep(0)
        async with self._lock:
            backoff: Backoff | None = None
            while True:
                consumer = self._consumer
                if self._closed or consumer is None:
                    raise RuntimeError(f"{self._describe()} is closed")
                if self._unanchored:
                    await self._anchor()
                taken = self._take_buffered()
                if taken is not None:
                    return taken
                try:
                    # Short waits, so events given back by a closed handle go out promptly.
                    batches = await consumer.getmany(timeout_ms=200)
                except ConsumerStoppedError:
                    raise RuntimeError(f"{self._describe()} is closed") from None
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    backoff = backoff or Backoff(
                        f"fetching by {self._describe()}", self._retry_timeout
                    )
                    await backoff.wait(exc)
                    continue
                backoff = None
                for records in batches.values():
                    self._buffer.extend(records)

    def next_nowait(self) -> tuple[Any, Ack] | None:
        """The next message if one is buffered and deliverable now, else None (no I/O)."""
        if self._closed or self._consumer is None or self._lock.locked() or self._unanchored:
            return None
        return self._take_buffered()

    def _take_buffered(self) -> tuple[Any, Ack] | None:
        while self._redeliver:
            tp, generation, record = self._redeliver.pop(0)
            entry = self._parts.get(tp)
            if entry is not None and entry[0] == generation:
                return record, self._ack_for(tp, generation, record.offset)
            # Otherwise the partition moved: its new holder starts at the commit.
        while self._buffer:
            record = self._buffer.popleft()
            tp = TopicPartition(record.topic, record.partition)
            entry = self._parts.get(tp)
            if entry is None:
                continue  # the partition was revoked after this was fetched
            generation, offsets = entry
            try:
                offsets.delivered(record.offset)
            except ValueError:
                continue  # fetched before a rebalance reset the position
            return record, self._ack_for(tp, generation, record.offset)
        return None

    # -- acking and committing ------------------------------------------------------------

    def _ack_for(self, tp: Any, generation: int, offset: int) -> Ack:
        async def ack() -> None:
            # A partition parked by a rebalance in progress keeps taking acks: they are
            # committed if it comes back, and redelivered elsewhere if it does not.
            entry = self._parts.get(tp) or self._parked.get(tp)
            if entry is None or entry[0] != generation or self._closed:
                return  # held by another member since, or closed: it will be redelivered
            offsets = entry[1]
            if offsets.ack(offset) and offsets.committable is not None:
                self._to_commit[tp] = offsets.committable
                self._wake_committer()

        return ack

    def _wake_committer(self) -> None:
        self._commit_wake.set()
        if self._commit_task is None:
            self._commit_task = asyncio.get_running_loop().create_task(
                self._commit_loop(), name=f"commit {self.topic}/{self.group}"
            )

    async def _commit_loop(self) -> None:
        backoff: Backoff | None = None
        while True:
            await self._commit_wake.wait()
            self._commit_wake.clear()
            if self._commit_interval > 0:
                await asyncio.sleep(self._commit_interval)
            consumer = self._consumer
            if consumer is None:
                return
            try:
                await self._commit_once(consumer)
            except CommitFailedError as exc:
                # The group rebalanced: the revocation callback already committed or dropped.
                logger.info("commit by %s failed in a rebalance: %r", self._describe(), exc)
            except Exception as exc:
                logger.warning("commit by %s failed: %r", self._describe(), exc)
                backoff = backoff or Backoff(f"committing by {self._describe()}", timedelta.max)
                self._commit_wake.set()
                await backoff.wait(exc)
            else:
                backoff = None

    async def _commit_once(self, consumer: Any) -> None:
        offsets = {tp: o for tp, o in self._to_commit.items() if tp in self._parts}
        for tp in set(self._to_commit) - set(offsets):
            del self._to_commit[tp]
        if not offsets:
            return
        with contextlib.suppress(IllegalStateError):
            await consumer.commit(offsets)
        for tp, offset in offsets.items():
            if self._to_commit.get(tp) == offset:
                del self._to_commit[tp]

    # -- sharing one member between receivers of one process ------------------------------

    def open_handle(self) -> ReaderHandle:
        """A new reader of this member; the member closes when its last handle does."""
        if self._closed:
            raise RuntimeError(f"{self._describe()} is closed")
        self._handles += 1
        return ReaderHandle(self)

    @property
    def closed(self) -> bool:
        """Whether the reader is closed (or closing)."""
        return self._closed

    def _give_back(self, items: list[tuple[Any, int, Any]]) -> None:
        self._redeliver.extend(items)
        self._redeliver.sort(key=lambda item: (item[0].partition, item[2].offset))

    async def _release(self) -> None:
        self._handles -= 1
        if self._handles <= 0:
            await self.close()


class ReaderHandle:
    """One receiver's share of a :class:`GroupReader`.

    Receivers of one name in one process share a single group member (the way the
    in-memory streamer shares a name): whichever asks next gets the next event. Events a
    handle had not acked when it closed go to the others; when the last handle closes,
    the member commits what was acked and leaves the group.
    """

    def __init__(self, reader: GroupReader) -> None:
        self._reader = reader
        self._in_flight: dict[tuple[Any, int], tuple[Any, int, Any]] = {}
        self._closed = False

    async def next(self) -> tuple[Any, Ack]:
        """The next message for this handle and its ack (see :meth:`GroupReader.next`)."""
        if self._closed:
            raise RuntimeError(f"{self._reader._describe()} is closed")
        record, ack = await self._reader.next()
        return record, self._track(record, ack)

    def next_nowait(self) -> tuple[Any, Ack] | None:
        """The next message if the reader has one buffered now, else None (no I/O)."""
        if self._closed:
            return None
        taken = self._reader.next_nowait()
        if taken is None:
            return None
        record, ack = taken
        return record, self._track(record, ack)

    def _track(self, record: Any, ack: Ack) -> Ack:
        tp = TopicPartition(record.topic, record.partition)
        key = (tp, record.offset)
        entry = self._reader._parts.get(tp)
        self._in_flight[key] = (tp, entry[0] if entry is not None else 0, record)

        async def ack_and_forget() -> None:
            self._in_flight.pop(key, None)
            await ack()

        return ack_and_forget

    async def close(self) -> None:
        """Give un-acked events back to the other handles, then release; safe twice."""
        if self._closed:
            return
        self._closed = True
        in_flight, self._in_flight = list(self._in_flight.values()), {}
        if not self._reader.closed:
            self._reader._give_back(in_flight)
        await self._reader._release()
