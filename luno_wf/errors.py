"""Errors raised by luno_wf.

Every error subclasses :class:`WorkflowError` and, where one fits, the matching builtin,
so ``except LookupError`` still catches a missing record::

    WorkflowError(Exception)
    ├── RecordNotFound(LookupError)
    ├── TimeoutNotFound(LookupError)
    ├── OutboxRecordNotFound(LookupError)
    ├── WorkflowInProgress
    ├── StaleRecord
    ├── InvalidTransition(ValueError)
    ├── InvalidRunStateTransition(ValueError)
    │   ├── UnableToPause
    │   ├── UnableToResume
    │   ├── UnableToCancel
    │   ├── UnableToDeleteData
    │   └── UnableToCompensate
    ├── UnknownStatus(ValueError)
    ├── InvalidForeignID(ValueError)
    ├── CallbackNotAccepted
    ├── CorruptRecord(ValueError)
    ├── PoisonEvent(ValueError)
    ├── RunFinished
    ├── WorkflowNotRunning(RuntimeError)
    ├── HistoryNotKept
    └── RoleLost
"""

from __future__ import annotations

__all__ = [
    "CallbackNotAccepted",
    "CorruptRecord",
    "HistoryNotKept",
    "InvalidForeignID",
    "InvalidRunStateTransition",
    "InvalidTransition",
    "OutboxRecordNotFound",
    "PoisonEvent",
    "RecordNotFound",
    "RoleLost",
    "RunFinished",
    "StaleRecord",
    "TimeoutNotFound",
    "UnableToCancel",
    "UnableToCompensate",
    "UnableToDeleteData",
    "UnableToPause",
    "UnableToResume",
    "UnknownStatus",
    "WorkflowError",
    "WorkflowInProgress",
    "WorkflowNotRunning",
]


class WorkflowError(Exception):
    """Base class of every error luno_wf raises.

    Context (``workflow_name``, ``foreign_id``, ``run_id``, ``status``) is attached where it
    is known, and appears in ``str(err)``.
    """

    def __init__(
        self,
        message: str = "",
        *,
        workflow_name: str | None = None,
        foreign_id: str | None = None,
        run_id: str | None = None,
        status: int | None = None,
    ) -> None:
        self.message = message or self._default_message()
        self.workflow_name = workflow_name
        self.foreign_id = foreign_id
        self.run_id = run_id
        self.status = status
        super().__init__(self._render())

    @classmethod
    def _default_message(cls) -> str:
        return cls.__doc__.splitlines()[0].rstrip(".").lower() if cls.__doc__ else cls.__name__

    def _render(self) -> str:
        context = [
            f"{name}={value!r}"
            for name, value in (
                ("workflow_name", self.workflow_name),
                ("foreign_id", self.foreign_id),
                ("run_id", self.run_id),
                ("status", self.status),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(context)})" if context else self.message


class RecordNotFound(WorkflowError, LookupError):
    """Record not found."""


class TimeoutNotFound(WorkflowError, LookupError):
    """Timeout not found."""


class OutboxRecordNotFound(WorkflowError, LookupError):
    """Outbox record not found."""


class WorkflowInProgress(WorkflowError):
    """Current workflow still in progress - retry once complete.

    Raised when a foreign id already has an unfinished run (initiated, running or paused).
    """


class StaleRecord(WorkflowError):
    """Record was modified since it was loaded.

    The record store's compare-and-set on ``meta.version`` refused the write.
    """


class InvalidTransition(WorkflowError, ValueError):
    """Invalid transition: the status graph has no edge for it."""


class InvalidRunStateTransition(WorkflowError, ValueError):
    """Invalid run state transition for the run-state controller."""


class UnableToPause(InvalidRunStateTransition):
    """Unable to pause the run in its current run state."""


class UnableToResume(InvalidRunStateTransition):
    """Unable to resume the run in its current run state."""


class UnableToCancel(InvalidRunStateTransition):
    """Unable to cancel the run in its current run state."""


class UnableToDeleteData(InvalidRunStateTransition):
    """Unable to delete the run's data in its current run state."""


class UnableToCompensate(InvalidRunStateTransition):
    """Unable to compensate the run in its current run state (only running or paused runs)."""


class UnknownStatus(WorkflowError, ValueError):
    """Status provided is not configured for workflow."""


class InvalidForeignID(WorkflowError, ValueError):
    """A foreign id that every store cannot keep: empty, blank, too long, or with NUL."""


class CorruptRecord(WorkflowError, ValueError):
    """A stored record row that cannot be read; the message says what is wrong.

    A run state out of range, a meta that is not an object, ...: rows luno_wf never writes,
    but a manual fix or another service can.
    """


class PoisonEvent(WorkflowError, ValueError):
    """An event no consumer can act on; it is set aside as a dead letter.

    Headers that are not an object of strings, a version that is not a number or stays
    ahead of its record, a record that cannot be read: the consumer moves on past it.
    """


class CallbackNotAccepted(WorkflowError):
    """No run of that foreign id is waiting in that status for a callback."""


class RunFinished(WorkflowError):
    """The run finished without reaching the awaited status."""


class WorkflowNotRunning(WorkflowError, RuntimeError):
    """Workflow is not running: call run() or enter ``async with wf`` first."""


class HistoryNotKept(WorkflowError):
    """The run's history is not kept: the store has no history, or the workflow turned it off.

    Raised by ``Workflow.history`` with a store that is not a
    :class:`~luno_wf.adapter.HistoryStore`, and by ``Workflow.compensate`` unless the
    workflow keeps history (``build(history=True)``, the default, on such a store).
    """


class RoleLost(WorkflowError):
    """The role was lost while its holder was working under it (lease expiry, connection loss).

    ``moved`` is True when the fleet handed the role to another live member on purpose (a
    member joined, or came back): a normal event in a fleet, not a fault.
    """

    def __init__(self, message: str = "", *, moved: bool = False) -> None:
        self.moved = moved
        super().__init__(message)
