"""The state of one background process, as :meth:`Workflow.states` reports it."""

from __future__ import annotations

import enum

__all__ = ["ProcessState"]


class ProcessState(enum.IntEnum):
    """The state of one background process (luno's values)."""

    UNKNOWN = 0
    SHUTDOWN = 1
    """The process has exited."""
    RUNNING = 2
    """The process holds its role and is working."""
    IDLE = 3
    """The process is waiting for its role."""
