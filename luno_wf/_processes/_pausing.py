"""Error counting and automatic pausing, shared by steps and timeouts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._record import Record
from .._runstate import RunState
from ..errors import InvalidRunStateTransition, StaleRecord

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["AUTO_PAUSE_REASON", "maybe_pause"]

AUTO_PAUSE_REASON = "max error retry threshold hit - automatically paused"


async def maybe_pause(
    wf: Workflow[Any, Any],
    process_name: str,
    record: Record,
    error: BaseException,
    threshold: int,
    *,
    permanent: bool = False,
) -> bool:
    """Count ``error`` against (process, run); pause the run when the count reaches ``threshold``.

    ``permanent`` errors (an invalid transition, an undecodable object) cannot succeed on a
    retry, so with no threshold configured they pause the run at once rather than retry
    forever. Returns whether the run is now paused (the caller then acks its event).
    """
    count = wf.count_error(process_name, record.run_id)
    if threshold == 0 and not permanent:
        return False
    if threshold and count < threshold:
        return False
    reason = f"{AUTO_PAUSE_REASON}: {type(error).__name__}: {error}"
    try:
        await wf.controller(record).transition(RunState.PAUSED, reason)
    except (StaleRecord, InvalidRunStateTransition):
        # Another writer moved the run meanwhile; its newer event carries on.
        wf.clear_errors(process_name, record.run_id)
        return True
    wf.clear_errors(process_name, record.run_id)
    wf.debug_log(
        "paused record after exceeding allowed error count",
        workflow_name=record.workflow_name,
        foreign_id=record.foreign_id,
        run_id=record.run_id,
    )
    return True
