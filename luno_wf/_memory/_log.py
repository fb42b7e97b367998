"""An append-only log with named consumer groups.

It is the core of the in-memory streamer and connector.

Invariants, per group: every position below ``next`` was handed out; a handed-out position
is either acked, in flight with exactly one open reader, or waiting in ``pending`` for
redelivery. So each item reaches each group at least once and never after its ack.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Generic, TypeVar

__all__ = ["Group", "Reader", "SharedLog"]

T = TypeVar("T")


class SharedLog(Generic[T]):
    """Items in append order, read by named groups."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self.groups: dict[str, Group[T]] = {}
        self._changed = asyncio.Event()

    def append(self, item: T) -> int:
        """Append and wake waiting readers; returns the item's position."""
        self.items.append(item)
        self.wake()
        return len(self.items) - 1

    def wake(self) -> None:
        """Wake every reader waiting for an item."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Wait for the next append or redelivery."""
        await self._changed.wait()

    def group(self, name: str, *, from_latest: bool) -> Group[T]:
        """The group of ``name``, created at the head of the log if ``from_latest``."""
        group = self.groups.get(name)
        if group is None:
            group = Group(self, len(self.items) if from_latest else 0)
            self.groups[name] = group
        return group


class Group(Generic[T]):
    """The position of one name in a log, shared by that name's readers."""

    def __init__(self, log: SharedLog[T], start: int) -> None:
        self.log = log
        self.next = start
        self.pending: list[int] = []  # min-heap of positions to redeliver

    def take(self) -> int | None:
        """The next position to hand out, or None if there is none now."""
        if self.pending:
            return heapq.heappop(self.pending)
        if self.next < len(self.log.items):
            self.next += 1
            return self.next - 1
        return None

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

    async def next(self) -> tuple[int, T]:
        """Wait for the next item; returns its position and the item."""
        if self._closed:
            raise RuntimeError("receiver is closed")
        # Yield once even when an item is ready, so a busy reader cannot starve the loop.
        await asyncio.sleep(0)
        while True:
            position = self._group.take()
            if position is not None:
                self._in_flight[position] = None
                return position, self._group.log.items[position]
            await self._group.log.changed()
            if self._closed:
                raise RuntimeError("receiver is closed")

    def ack(self, position: int) -> None:
        """Mark ``position`` done for the group; acking twice or after close is harmless."""
        self._in_flight.pop(position, None)

    def close(self) -> None:
        """Give back every un-acked item; safe twice."""
        if self._closed:
            return
        self._closed = True
        self._group.give_back(list(self._in_flight))
        self._in_flight.clear()
