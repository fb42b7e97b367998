"""Storing the result of a step, callback or timeout (luno's updater)."""

from __future__ import annotations

from typing import Any

from .._engine import Engine
from .._record import Meta, Record
from .._run import RUN_STATE_UPDATED, SAVE_AND_REPEAT, SKIP, Run, _Sentinel
from .._runstate import RunState
from ..errors import InvalidTransition

__all__ = ["apply_result", "next_record"]


async def apply_result(
    engine: Engine[Any, Any], current: int, result: object, run: Run[Any, Any], actor: str
) -> bool:
    """Store what a user function returned for ``run`` (at status ``current``), as ``actor``.

    Returns whether a record was written by this call. Raises
    :class:`~luno_wf.errors.InvalidTransition` for a status the graph does not allow from
    ``current`` (nothing is stored) and :class:`~luno_wf.errors.StaleRecord` if the run was
    written elsewhere since it was loaded.
    """
    updated = next_record(engine, current, result, run, actor)
    if updated is None:
        return False
    await engine.write(updated, run.record.run_state)
    return True


def next_status(engine: Engine[Any, Any], current: int, result: object, run: Run[Any, Any]) -> int:
    """The status value to store for ``result``, -1 when nothing is stored.

    Raises :class:`~luno_wf.errors.InvalidTransition` for a status the graph does not allow
    from ``current``, or a value that is not a status of the workflow.
    """
    definition = engine.definition
    status_type = definition.status_type
    if isinstance(result, _Sentinel):
        if result is SAVE_AND_REPEAT:
            return current
        assert result is SKIP or result is RUN_STATE_UPDATED
        return -1
    if result is None or result == 0:
        return -1
    if not isinstance(result, status_type):
        message = (
            f"a step must return a member of {status_type.__name__} (or a Run control "
            f"value), got {result!r}"
        )
    elif int(result) not in definition.allowed[current]:
        message = (
            f"current status not defined in graph: current={status_type(current)!r}, "
            f"next={result!r}; allowed: "
            f"{[status_type(s) for s in definition.graph.transitions(current)]}"
        )
    else:
        return int(result)
    raise InvalidTransition(
        message,
        workflow_name=engine.name,
        foreign_id=run.foreign_id,
        run_id=run.run_id,
        status=current,
    )


def next_record(
    engine: Engine[Any, Any], current: int, result: object, run: Run[Any, Any], actor: str
) -> Record | None:
    """The record to write for what a user function returned, or None if nothing is.

    The write names ``actor`` and clears ``meta.error``.

    Raises :class:`~luno_wf.errors.InvalidTransition` as :func:`next_status` does.
    """
    definition = engine.definition
    if isinstance(result, definition.status_type) and result in definition.allowed[current]:
        status = int(result)  # the usual case, checked first
    else:
        status = next_status(engine, current, result, run)
        if status < 0:
            return None
    record = run.record
    meta = record.meta
    finished = status != current and status in definition.terminal
    # Built directly rather than with attrs.evolve: this is the hot path of every step.
    return Record(
        workflow_name=record.workflow_name,
        foreign_id=record.foreign_id,
        run_id=record.run_id,
        run_state=RunState.COMPLETED if finished else RunState.RUNNING,
        status=status,
        object=engine.codec.encode(run.object),
        created_at=record.created_at,
        updated_at=engine.clock.now(),
        meta=Meta(
            run_state_reason=meta.run_state_reason,
            status_description=definition.names[status],
            version=meta.version + 1,
            trace_origin=meta.trace_origin,
            actor=actor,
            traceparent=meta.traceparent,
            tracestate=meta.tracestate,
        ),
    )
