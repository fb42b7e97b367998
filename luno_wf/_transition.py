"""A run's history, typed: :class:`Transition` and :meth:`Workflow.history`."""

from __future__ import annotations

import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

import attrs

from ._engine import Engine
from ._history import HistoryEntry
from ._lookup import lookup_run
from ._runstate import RunState
from ._types import S, T
from .adapter import HistoryStore
from .errors import HistoryNotKept, RecordNotFound, UnknownStatus

__all__ = ["Transition", "history_store", "run_history", "transition_of"]

X = TypeVar("X")


@attrs.frozen(kw_only=True)
class Transition(Generic[S]):
    """One write of a run's record, as the run's history keeps it, with its status typed.

    :meth:`Workflow.history` returns a run's transitions oldest first: one per write (the
    trigger, each step, callback and timeout that moved it, each pause, resume, cancel and
    deletion), numbered by the record's version.

    Attributes:
        run_id: The run.
        version: The record's ``meta.version`` after the write (1 for the trigger).
        status: The run's status after the write.
        run_state: The run's run state after the write.
        reason: The run-state reason (``meta.run_state_reason``); emptied when the run's
            data is deleted.
        actor: What made the write: ``"api"``, ``"operator:alice"``, ``"step:CREATED"``,
            ``"callback:WAITING"``, ``"timeout:WAITING"``, ``"schedule:<cron spec>"``,
            ``"connector:<name>"``, ``"delete"``, ``"pause-retry"``, ``"compensate"``,
            ``"compensated:<version>"``; empty for writes made before actors were kept.
        at: When the write was made (the record's ``updated_at``).
        error: The error text of a pause the engine made after errors, else empty.
        trace_id: The trace id of the write's span; empty when none.
        object: The encoded object written, when the workflow keeps object snapshots
            (``build(history_objects=True)``); ``None`` otherwise and once the run's data is
            deleted. :meth:`object_as` decodes it.

    """

    run_id: str
    version: int
    status: S
    run_state: RunState
    reason: str
    actor: str
    at: datetime
    error: str
    trace_id: str
    object: bytes | None = None
    _decode: Callable[[bytes], Any] | None = attrs.field(
        default=None, eq=False, repr=False, alias="decode"
    )

    def object_as(self, object_type: type[X]) -> X | None:
        """The snapshot in :attr:`object`, decoded as the workflow decodes its objects.

        Returns ``None`` when the entry keeps no snapshot. ``object_type`` is the workflow's
        object type (it types the result).

        Raises:
            TypeError: The decoded object is not an ``object_type``, or the transition was
                not made by a workflow (it has no decoder).

        """
        if self.object is None:
            return None
        if self._decode is None:
            raise TypeError("this transition has no decoder: read it from Workflow.history")
        value = self._decode(self.object)
        expected = typing.get_origin(object_type) or object_type
        if not isinstance(value, expected):
            raise TypeError(
                f"the run's object is a {type(value).__name__}, not a "
                f"{getattr(object_type, '__name__', object_type)}"
            )
        return typing.cast(X, value)


def transition_of(engine: Engine[T, S], entry: HistoryEntry) -> Transition[S]:
    """``entry`` with its status typed (``UnknownStatus`` if the enum lacks it)."""
    status = engine.definition.members.get(entry.status)
    if status is None:
        raise UnknownStatus(
            f"history entry {entry.version} has status {entry.status}, not a member of "
            f"{engine.definition.status_type.__name__}",
            workflow_name=engine.name,
            run_id=entry.run_id,
            status=entry.status,
        )
    return Transition(
        run_id=entry.run_id,
        version=entry.version,
        status=status,
        run_state=entry.run_state,
        reason=entry.reason,
        actor=entry.actor,
        at=entry.at,
        error=entry.error,
        trace_id=entry.trace_id,
        object=entry.object,
        decode=engine.codec.decode,
    )


def history_store(engine: Engine[Any, Any], run_id: str | None = None) -> HistoryStore:
    """The engine's store as a :class:`HistoryStore`, else raise ``HistoryNotKept``."""
    store = engine.history_store
    if store is None:
        raise HistoryNotKept(
            f"the record store {type(engine.store).__name__} keeps no run history (it is "
            "not a luno_wf.adapter.HistoryStore): build the workflow on a store that keeps "
            "history, such as MemRecordStore or PostgresRecordStore",
            workflow_name=engine.name,
            run_id=run_id,
        )
    return store


async def run_history(engine: Engine[T, S], run_id: str) -> list[Transition[S]]:
    """The transitions of run ``run_id`` of the engine's workflow, oldest first.

    Raises:
        HistoryNotKept: The store keeps no history.
        RecordNotFound: No run of this workflow has that id (the message says when it is a
            foreign id).

    """
    store = history_store(engine, run_id)
    try:
        entries = await store.history(run_id)
    except RecordNotFound:
        await lookup_run(engine.store, engine.name, run_id)  # says if it is a foreign id
        raise
    if entries:
        workflow_name = entries[0].workflow_name
    else:
        workflow_name = (await lookup_run(engine.store, engine.name, run_id)).workflow_name
    if workflow_name != engine.name:
        raise RecordNotFound(
            f"run belongs to workflow {workflow_name!r}", workflow_name=engine.name, run_id=run_id
        )
    return [transition_of(engine, entry) for entry in entries]
