"""The engine's lifecycle of a run, with luno's values and transition table."""

from __future__ import annotations

import enum

__all__ = ["RunState"]


class RunState(enum.IntEnum):
    """Where a run is in its lifecycle, independent of its business status.

    The values are luno/workflow's, so records written by Go and Python services agree.
    """

    UNKNOWN = 0
    INITIATED = 1
    RUNNING = 2
    PAUSED = 3
    CANCELLED = 4
    COMPLETED = 5
    DATA_DELETED = 6
    REQUESTED_DATA_DELETED = 7

    def __str__(self) -> str:
        return _NAMES[self]

    def valid(self) -> bool:
        """Whether this is a real run state (not UNKNOWN)."""
        return RunState.INITIATED <= self <= RunState.REQUESTED_DATA_DELETED

    def finished(self) -> bool:
        """Whether the run will never move again (a new run of its foreign id may start)."""
        return self in _FINISHED

    def stopped(self) -> bool:
        """Whether the engine must not process the run (paused, cancelled or deleted)."""
        return self in _STOPPED

    def can_transition_to(self, target: RunState) -> bool:
        """Whether the run-state controller may move a run from this state to ``target``."""
        return target in _TRANSITIONS.get(self, frozenset())


_NAMES = {
    RunState.UNKNOWN: "Unknown",
    RunState.INITIATED: "Initiated",
    RunState.RUNNING: "Running",
    RunState.PAUSED: "Paused",
    RunState.CANCELLED: "Cancelled",
    RunState.COMPLETED: "Completed",
    RunState.DATA_DELETED: "Data Deleted",
    RunState.REQUESTED_DATA_DELETED: "Requested Data Deleted",
}

_FINISHED = frozenset(
    {
        RunState.COMPLETED,
        RunState.CANCELLED,
        RunState.REQUESTED_DATA_DELETED,
        RunState.DATA_DELETED,
    }
)

_STOPPED = frozenset(
    {
        RunState.PAUSED,
        RunState.CANCELLED,
        RunState.REQUESTED_DATA_DELETED,
        RunState.DATA_DELETED,
    }
)

# The run-state controller's table (luno's runstate.go); every other move, X -> X included,
# is invalid. The engine's own writes (trigger, step updates, deletion) set states directly.
_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.INITIATED: frozenset({RunState.RUNNING, RunState.PAUSED}),
    RunState.RUNNING: frozenset({RunState.PAUSED, RunState.CANCELLED, RunState.COMPLETED}),
    RunState.PAUSED: frozenset({RunState.RUNNING, RunState.CANCELLED}),
    RunState.COMPLETED: frozenset({RunState.REQUESTED_DATA_DELETED}),
    RunState.CANCELLED: frozenset({RunState.REQUESTED_DATA_DELETED}),
    RunState.REQUESTED_DATA_DELETED: frozenset({RunState.DATA_DELETED}),
    RunState.DATA_DELETED: frozenset({RunState.REQUESTED_DATA_DELETED}),
}
