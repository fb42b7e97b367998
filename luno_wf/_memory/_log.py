"""An append-only log with named consumer groups.

It is the core of the in-memory streamer and connector. Invariants, per group: every
position below ``next`` was handed out; a handed-out position is either acked, in flight
with exactly one open reader, or waiting in ``pending`` for redelivery. So each item reaches
each group at least once and never after its ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from typing import Generic, TypeVar

__all__ = ["Group", "Reader", "SharedLog"]

T = TypeVar("T")

# Readers yield to the event loop once per this many items taken without waiting, so a long
# backlog cannot hold the loop (a yield per item would cost a loop iteration each).
_YIELD_EVERY = 64


class SharedLog(Generic[T]):
    """Items in append order, read by named groups.

    Items every group has moved past are dropped, but the newest ``retain`` items are always
    kept so that a group created a little later still finds them.
    """

    def __init__(self, retain: int = 10_000) -> None:
        self.items: list[T] = []
        self.base = 0  # absolute position of items[0]
        self.retain = retain
        self.groups: dict[str, Group[T]] = {}
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def end(self) -> int:
        """The absolute position after the last item."""
        return self.base + len(self.items)

    def append(self, item: T) -> int:
        """Append and wake waiting readers; returns the item's position."""
        self.items.append(item)
        if len(self.items) > 2 * self.retain:
            self._trim()
        self.wake()
        return self.end - 1

    def get(self, position: int) -> T:
        """The item at an absolute position."""
        return self.items[position - self.base]

    def _trim(self) -> None:
        low = min((group.low_water() for group in self.groups.values()), default=self.end)
        cut = min(low, self.end - self.retain) - self.base
        if cut > 0:
            del self.items[:cut]
            self.base += cut

    def wake(self) -> None:
        """Wake every reader waiting for an item."""
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def changed(self) -> None:
        """Wait for the next append or redelivery (cancellable)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def group(self, name: str, *, from_latest: bool) -> Group[T]:
        """The group of ``name``, created at the head of the log if ``from_latest``."""
        group = self.groups.get(name)
        if group is None:
            group = Group(self, self.end if from_latest else self.base)
            self.groups[name] = group
        return group


class Group(Generic[T]):
    """The position of one name in a log, shared by that name's readers."""

    def __init__(self, log: SharedLog[T], start: int) -> None:
        self.log = log
        self.next = start
        self.pending: list[int] = []  # min-heap of positions to redeliver
        self.in_flight: dict[int, None] = {}

    def low_water(self) -> int:
        """The lowest position this group may still need."""
        low = self.next
        if self.pending:
            low = min(low, self.pending[0])
        if self.in_flight:
            low = min(low, min(self.in_flight))
        return low

    def take(self) -> int | None:
        """The next position to hand out, or None if there is none now."""
        if self.pending:
            position = heapq.heappop(self.pending)
        elif self.next < self.log.end:
            self.next = max(self.next, self.log.base)
            position = self.next
            self.next += 1
        else:
            return None
        self.in_flight[position] = None
        return position

    def give_back(self, positions: list[int]) -> None:
        """Return un-acked positions for redelivery to the group's readers."""
        for position in positions:
            heapq.heappush(self.pending, position)
        if positions:
            self.log.wake()


class Reader(Generic[T]):
    """One open reader of a group; closing it gives its un-acked items back."""

    def __init__(self, group: Group[T]) -> None:
        self._group = group
        self._in_flight: dict[int, None] = {}
        self._closed = False
        self._streak = 0

    async def next(self) -> tuple[int, T]:
        """Wait for the next item; returns its position and the item."""
        if self._closed:
            raise RuntimeError("receiver is closed")
        self._streak += 1
        if self._streak >= _YIELD_EVERY:
            self._streak = 0
            await asyncio.sleep(0)
        while True:
            position = self._group.take()
            if position is not None:
                self._in_flight[position] = None
                return position, self._group.log.get(position)
            self._streak = 0
            await self._group.log.changed()
            if self._closed:
                raise RuntimeError("receiver is closed")

    def take_ready(self) -> tuple[int, T] | None:
        """The next item if one is available now, else None (never waits)."""
        if self._closed:
            return None
        position = self._group.take()
        if position is None:
            return None
        self._in_flight[position] = None
        return position, self._group.log.get(position)

    def ack(self, position: int) -> None:
        """Mark ``position`` done for the group; acking twice or after close is harmless."""
        if self._in_flight.pop(position, 0) is None:
            self._group.in_flight.pop(position, None)

    def close(self) -> None:
        """Give back every un-acked item; safe twice."""
        if self._closed:
            return
        self._closed = True
        positions = list(self._in_flight)
        for position in positions:
            self._group.in_flight.pop(position, None)
        self._group.give_back(positions)
        self._in_flight.clear()
