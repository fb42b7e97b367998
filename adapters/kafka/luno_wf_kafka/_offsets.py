"""Which offset of a partition is safe to commit, given out-of-order acks.

Kafka keeps one committed offset per (group, partition): everything below it counts as
done. Events are handed out in offset order but may be acked in any order, so the offset
committed is one past the longest acked prefix of what was handed out, never past an event
still in flight; a receiver that stops with events in flight leaves them to be redelivered.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PartitionOffsets"]


class PartitionOffsets:
    """Delivered and acked offsets of one partition, for one assignment of it.

    Invariant: ``committable`` is one past the highest delivered offset such that it and
    every offset delivered before it are acked; no un-acked delivered offset lies below it.
    """

    def __init__(self) -> None:
        self._order: deque[int] = deque()  # delivered, not yet in the committed prefix
        self._unacked: set[int] = set()  # delivered and not acked
        self.committable: int | None = None

    def delivered(self, offset: int) -> None:
        """Record that ``offset`` was handed out; offsets must increase.

        Raises:
            ValueError: ``offset`` is not above every offset delivered before.

        """
        if self._order:
            floor = self._order[-1] + 1
        else:
            floor = self.committable if self.committable is not None else 0
        if offset < floor:
            raise ValueError(f"offset {offset} delivered out of order (expected >= {floor})")
        self._order.append(offset)
        self._unacked.add(offset)

    def ack(self, offset: int) -> bool:
        """Mark ``offset`` done; returns whether :attr:`committable` moved.

        Acking an offset twice, or one never delivered, changes nothing.
        """
        if offset not in self._unacked:
            return False
        self._unacked.remove(offset)
        moved = False
        while self._order and self._order[0] not in self._unacked:
            self.committable = self._order.popleft() + 1
            moved = True
        return moved

    @property
    def in_flight(self) -> int:
        """How many delivered offsets are not yet acked."""
        return len(self._unacked)
