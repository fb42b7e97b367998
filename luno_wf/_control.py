"""Run-state controls from the API: pause, resume, cancel, delete data."""

from __future__ import annotations

from typing import Any

import attrs

from ._engine import Engine
from ._lookup import lookup_run
from ._runstate import RunState
from ._tracing import Work
from .errors import RecordNotFound

__all__ = ["control"]

_WORK = {
    RunState.PAUSED: Work.PAUSE,
    RunState.RUNNING: Work.RESUME,
    RunState.CANCELLED: Work.CANCEL,
    RunState.REQUESTED_DATA_DELETED: Work.DELETE_DATA,
}


async def control(engine: Engine[Any, Any], run_id: str, target: RunState, reason: str) -> None:
    """Move run ``run_id`` to ``target`` with ``reason``: one compare-and-set write.

    Raises:
        RecordNotFound: No such run in this workflow.
        InvalidRunStateTransition: The run's state does not allow the move (a subclass
            names the verb: ``UnableToPause``, ...).
        StaleRecord: The run was written between the lookup and the write.

    """
    record = await lookup_run(engine.store, engine.name, run_id)
    if record.workflow_name != engine.name:
        raise RecordNotFound(
            f"run belongs to workflow {record.workflow_name!r}",
            workflow_name=engine.name,
            run_id=run_id,
        )
    if record.run_state == RunState.INITIATED:
        # As when a step processes it, a run not yet picked up counts as running: so a
        # just-triggered run can be cancelled too.
        record = attrs.evolve(record, run_state=RunState.RUNNING)
    with engine.tracing.span(_WORK[target], record, caller=True):
        await engine.controller(record).transition(target, reason)
