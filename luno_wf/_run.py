"""The typed views handed to user code: :class:`TypedRecord` and :class:`Run`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Generic, cast

import attrs

from ._record import Meta, Record
from ._runstate import RunState
from ._types import S, T
from .errors import (
    InvalidRunStateTransition,
    UnableToCancel,
    UnableToDeleteData,
    UnableToPause,
    UnableToResume,
)

__all__ = ["Run", "TypedRecord"]


class _Sentinel(int):
    """A value a step returns to steer the engine instead of naming a next status.

    It is an ``int`` (luno's reserved values 0, -1, -2) but never a member of the user's enum,
    so the engine tells it apart by type.
    """

    description: str

    def __new__(cls, value: int, description: str) -> _Sentinel:
        self = super().__new__(cls, value)
        self.description = description
        return self

    def __repr__(self) -> str:
        return f"<{self.description}>"


SKIP = _Sentinel(0, "skip: nothing stored")
RUN_STATE_UPDATED = _Sentinel(-1, "run state updated: pause or cancel already stored")
SAVE_AND_REPEAT = _Sentinel(-2, "save and repeat: object stored, same status processed again")

StoreFunc = Callable[[Record, RunState], Awaitable[None]]
"""Stores a record; the second argument is the run state it leaves."""

_UNABLE: dict[RunState, type[InvalidRunStateTransition]] = {
    RunState.PAUSED: UnableToPause,
    RunState.RUNNING: UnableToResume,
    RunState.CANCELLED: UnableToCancel,
    RunState.REQUESTED_DATA_DELETED: UnableToDeleteData,
}


class RunStateController:
    """Moves a run between run states (pause, resume, cancel, delete), one write each.

    Each write names ``actor`` in ``meta.actor`` (``None`` keeps the record's) and clears
    ``meta.error`` unless :meth:`transition` is given one.
    """

    def __init__(
        self,
        record: Record,
        store: StoreFunc,
        now: Callable[[], datetime],
        actor: str | None = None,
    ) -> None:
        self.record = record
        self._store = store
        self._now = now
        self.actor = actor

    async def transition(self, target: RunState, reason: str, *, error: str = "") -> Record:
        """Store the run in ``target`` with ``reason``; raises if the move is not allowed.

        ``error`` is the error text an automatic pause keeps in ``meta.error``.
        """
        current = self.record.run_state
        if not current.can_transition_to(target):
            unable = _UNABLE.get(target, InvalidRunStateTransition)
            raise unable(
                f"invalid RunState: from {current} | to {target}",
                workflow_name=self.record.workflow_name,
                foreign_id=self.record.foreign_id,
                run_id=self.record.run_id,
            )
        updated = attrs.evolve(
            self.record,
            run_state=target,
            updated_at=self._now(),
            meta=attrs.evolve(
                self.record.meta,
                run_state_reason=reason,
                version=self.record.meta.version + 1,
                actor=self.record.meta.actor if self.actor is None else self.actor,
                error=error,
            ),
        )
        await self._store(updated, current)
        self.record = updated
        return updated


class TypedRecord(Generic[T, S]):
    """A run as user code sees it: the record's fields, with ``status`` and ``object`` typed.

    Attributes:
        object: The decoded object the run carries.
        record: The stored, untyped form.

    """

    __slots__ = ("_status", "object", "record")

    def __init__(self, record: Record, status: S, object: T) -> None:
        self.record = record
        self._status = status
        self.object = object

    @property
    def status(self) -> S:
        """The run's status, a member of the workflow's enum.

        Read-only: a step moves the run by returning the next status, so assigning it is a
        type error (and an ``AttributeError`` at run time) rather than a change that is lost.
        """
        return self._status

    if not TYPE_CHECKING:  # mypy sees a read-only property; assigning says what to do instead

        @status.setter
        def status(self, value):
            raise AttributeError(
                f"{type(self).__name__}.status is read-only: return the next status from the "
                f"step (return {value!r}) instead of assigning it"
            )

    @property
    def workflow_name(self) -> str:
        """The workflow's name."""
        return self.record.workflow_name

    @property
    def foreign_id(self) -> str:
        """The caller's business key."""
        return self.record.foreign_id

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.record.run_id

    @property
    def run_state(self) -> RunState:
        """Where the run is in its lifecycle."""
        return self.record.run_state

    @property
    def created_at(self) -> datetime:
        """When the run was triggered."""
        return self.record.created_at

    @property
    def updated_at(self) -> datetime:
        """When the run was last written."""
        return self.record.updated_at

    @property
    def meta(self) -> Meta:
        """Engine bookkeeping: version, run-state reason, status description."""
        return self.record.meta

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(run_id={self.run_id!r}, foreign_id={self.foreign_id!r}, "
            f"status={self.status!r}, run_state={self.run_state!r}, object={self.object!r})"
        )


class Run(TypedRecord[T, S]):
    """A run being processed: a :class:`TypedRecord` that can also steer the engine.

    Inside a step, ``return await run.pause(reason)``, ``return await run.cancel(reason)``,
    ``return run.skip()`` or ``return run.save_and_repeat()``. Changes to :attr:`object` are
    stored when the step returns a next status (or ``save_and_repeat``).
    """

    __slots__ = ("_controller",)

    def __init__(
        self, record: Record, status: S, object: T, controller: RunStateController
    ) -> None:
        super().__init__(record, status, object)
        self._controller = controller

    async def pause(self, reason: str) -> S:
        """Pause the run now (stored at once); return the result to the engine."""
        await self._controller.transition(RunState.PAUSED, reason)
        return cast(S, RUN_STATE_UPDATED)

    async def cancel(self, reason: str) -> S:
        """Cancel the run now (stored at once); return the result to the engine."""
        await self._controller.transition(RunState.CANCELLED, reason)
        return cast(S, RUN_STATE_UPDATED)

    def skip(self) -> S:
        """Store nothing; the run stays where it is (a later event may move it)."""
        return cast(S, SKIP)

    def save_and_repeat(self) -> S:
        """Store the object, keep the status, and run this step again (at the back of the queue)."""
        return cast(S, SAVE_AND_REPEAT)
