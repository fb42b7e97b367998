"""Run-state-change hook consumers: on_complete, on_pause, on_cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._event import Event, Header
from .._metrics import SkipReason
from .._naming import make_role, run_state_change_topic
from .._runstate import RunState
from ..errors import RecordNotFound
from ._loop import ProcessSpec, consumer_process
from .step import DECODE_ERRORS

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["process"]


def keep_run_state(run_state: RunState) -> Any:
    """A filter keeping run-state-change events of ``run_state`` (and events without one)."""
    wanted = str(int(run_state))

    def keep(event: Event) -> bool:
        return event.headers.get(Header.RUN_STATE, wanted) == wanted

    return keep


def process(wf: Workflow[Any, Any], run_state: RunState) -> ProcessSpec:
    """The consumer calling the hook registered for ``run_state``.

    Each hook has its own consumer, so a failing hook (retried with back-off) never holds
    up the others.
    """
    hook = wf.hooks[run_state]
    label = str(run_state)
    role = make_role(wf.name, label, "run-state-change-hook-consumer")
    name = make_role(label, "run-state-change-hook-consumer")
    opts = wf.defaults
    probe = wf.process_metrics(name)

    async def handle(event: Event) -> None:
        try:
            record = await wf.store.lookup(event.foreign_id)
        except RecordNotFound:
            if probe is not None:
                probe.skip(SkipReason.RECORD_NOT_FOUND)
            return
        # A run that has moved on (resumed, say) is not reported; a completed run whose data
        # was deleted since is still reported as completed.
        if record.run_state != run_state and not (
            run_state == RunState.COMPLETED and record.run_state.finished()
        ):
            return
        try:
            typed = wf.typed(record)
        except DECODE_ERRORS as err:
            wf.logger.error("hook %s: cannot decode run %s: %s", name, record.run_id, err)
            if probe is not None:
                probe.skip(SkipReason.UNABLE_TO_UNMARSHAL_OBJECT)
            return
        await hook(typed)

    return consumer_process(
        wf,
        name=name,
        role=role,
        topic=run_state_change_topic(wf.name),
        handle=handle,
        polling=opts.polling_frequency,
        backoff=opts.err_backoff,
        lag_alert=opts.lag_alert,
        keep=keep_run_state(run_state),
    )
