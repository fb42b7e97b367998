"""The status graph: valid statuses, allowed transitions, starting and terminal points."""

from __future__ import annotations

__all__ = ["Graph"]


class Graph:
    """Edges between status values, with luno's rules (spec §1.3).

    A status that is the target of any edge is never a starting point; a status with no
    outgoing edge is terminal.
    """

    def __init__(self) -> None:
        self._order: list[int] = []
        self._transitions: dict[int, list[int]] = {}
        self._non_starting: set[int] = set()

    def add(self, from_status: int, to_status: int) -> None:
        """Add the edge ``from_status -> to_status``."""
        for node in (from_status, to_status):
            if node not in self._transitions:
                self._transitions[node] = []
                self._order.append(node)
        self._non_starting.add(to_status)
        self._transitions[from_status].append(to_status)

    def add_node(self, status: int) -> None:
        """Make ``status`` valid without an edge (a status consumed by a callback, say)."""
        if status not in self._transitions:
            self._transitions[status] = []
            self._order.append(status)

    def is_valid(self, status: int) -> bool:
        """Whether ``status`` appears in the graph."""
        return status in self._transitions

    def is_terminal(self, status: int) -> bool:
        """Whether ``status`` is valid and has no outgoing edge."""
        return status in self._transitions and not self._transitions[status]

    def transitions(self, status: int) -> list[int]:
        """Targets of ``status`` in insertion order (duplicates removed)."""
        return list(dict.fromkeys(self._transitions.get(status, [])))

    def allows(self, from_status: int, to_status: int) -> bool:
        """Whether ``from_status -> to_status`` is an edge."""
        return to_status in self._transitions.get(from_status, ())

    def nodes(self) -> list[int]:
        """Every valid status, ascending."""
        return sorted(self._transitions)

    def node_order(self) -> list[int]:
        """Every valid status, in the order first seen."""
        return list(self._order)

    def starting(self) -> list[int]:
        """Statuses with outgoing edges that no edge leads to, in the order first seen."""
        return [n for n in self._order if self._transitions[n] and n not in self._non_starting]

    def terminal(self) -> list[int]:
        """Statuses without outgoing edges, in the order first seen."""
        return [n for n in self._order if not self._transitions[n]]
