"""Run-state controls from the API: pause, resume, cancel, delete data."""

from __future__ import annotations

from typing import Any

import attrs

from ._actor import api_actor
from ._engine import Engine
from ._lookup import lookup_own_run
from ._runstate import RunState
from ._tracing import Work

__all__ = ["control"]

_WORK = {
    RunState.PAUSED: Work.PAUSE,
    RunState.RUNNING: Work.RESUME,
    RunState.CANCELLED: Work.CANCEL,
    RunState.REQUESTED_DATA_DELETED: Work.DELETE_DATA,
}


async def control(
    engine: Engine[Any, Any],
    run_id: str,
    target: RunState,
    reason: str,
    actor: str | None = None,
) -> None:
    """Move run ``run_id`` to ``target`` with ``reason``: one compare-and-set write.

    The write names ``actor``, else the calling connector, else ``"api"``.

    Raises:
        RecordNotFound: No such run in this workflow.
        InvalidRunStateTransition: The run's state does not allow the move (a subclass
            names the verb: ``UnableToPause``, ...).
        StaleRecord: The run was written between the lookup and the write.

    """
    writer = api_actor(actor)
    record = await lookup_own_run(engine.store, engine.name, run_id)
    if record.run_state == RunState.INITIATED:
        # As when a step processes it, a run not yet picked up counts as running: so a
        # just-triggered run can be cancelled too.
        record = attrs.evolve(record, run_state=RunState.RUNNING)
    with engine.tracing.span(_WORK[target], record, caller=True):
        await engine.controller(record, writer).transition(target, reason)
