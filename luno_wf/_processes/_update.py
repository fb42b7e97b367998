"""Storing the result of a step, callback or timeout (luno's updater)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._record import Meta, Record
from .._run import RUN_STATE_UPDATED, SAVE_AND_REPEAT, SKIP, Run, _Sentinel
from .._runstate import RunState
from ..errors import InvalidTransition

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["apply_result", "next_record"]


async def apply_result(
    wf: Workflow[Any, Any], current: int, result: object, run: Run[Any, Any]
) -> bool:
    """Store what a user function returned for ``run`` (at status ``current``).

    Returns whether a record was written by this call. Raises
    :class:`~luno_wf.errors.InvalidTransition` for a status the graph does not allow from
    ``current`` (nothing is stored) and :class:`~luno_wf.errors.StaleRecord` if the run was
    written elsewhere since it was loaded.
    """
    updated = next_record(wf, current, result, run)
    if updated is None:
        return False
    await wf.write(updated, run.record.run_state)
    return True


def next_record(
    wf: Workflow[Any, Any], current: int, result: object, run: Run[Any, Any]
) -> Record | None:
    """The record to write for what a user function returned, or None if nothing is.

    Raises :class:`~luno_wf.errors.InvalidTransition` for a status the graph does not allow
    from ``current``.
    """
    if isinstance(result, _Sentinel):
        if result is SAVE_AND_REPEAT:
            next_status = current
        else:
            assert result is SKIP or result is RUN_STATE_UPDATED
            return None
    elif result is None or result == 0:
        return None
    elif isinstance(result, wf.status_type):
        next_status = int(result)
        if next_status not in wf.allowed[current]:
            raise InvalidTransition(
                f"current status not defined in graph: current={wf.status_type(current)!r}, "
                f"next={result!r}; allowed: "
                f"{[wf.status_type(s) for s in wf.graph.transitions(current)]}",
                workflow_name=wf.name,
                foreign_id=run.foreign_id,
                run_id=run.run_id,
                status=current,
            )
    else:
        raise InvalidTransition(
            f"a step must return a member of {wf.status_type.__name__} (or a Run control "
            f"value), got {result!r}",
            workflow_name=wf.name,
            foreign_id=run.foreign_id,
            run_id=run.run_id,
            status=current,
        )
    record = run.record
    meta = record.meta
    finished = next_status != current and next_status in wf.terminal
    # Built directly rather than with attrs.evolve: this is the hot path of every step.
    return Record(
        workflow_name=record.workflow_name,
        foreign_id=record.foreign_id,
        run_id=record.run_id,
        run_state=RunState.COMPLETED if finished else RunState.RUNNING,
        status=next_status,
        object=wf.codec.encode(run.object),
        created_at=record.created_at,
        updated_at=wf.clock.now(),
        meta=Meta(
            run_state_reason=meta.run_state_reason,
            status_description=wf.names[next_status],
            version=meta.version + 1,
            trace_origin=meta.trace_origin,
        ),
    )
