"""Automatic retry of paused runs (``build(pause_retry=...)``)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .._event import Event
from .._metrics import SkipReason
from .._naming import make_role, run_state_change_topic
from .._runstate import RunState
from ..errors import InvalidRunStateTransition, RecordNotFound, StaleRecord
from ._loop import ProcessSpec, consumer_process
from .hook import keep_run_state

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["process"]


def process(wf: Workflow[Any, Any]) -> ProcessSpec:
    """The consumer that resumes each paused run once it has been paused for ``pause_retry``."""
    assert wf.pause_retry is not None
    resume_after: timedelta = wf.pause_retry
    role = make_role(wf.name, "paused-records-retry-consumer")
    name = "paused-records-retry-consumer"
    opts = wf.defaults
    lag_alert = resume_after * 3
    if lag_alert < timedelta(minutes=1):
        lag_alert = resume_after + timedelta(minutes=5)
    probe = wf.process_metrics(name)

    async def handle(event: Event) -> None:
        try:
            record = await wf.store.lookup(event.foreign_id)
        except RecordNotFound:
            if probe is not None:
                probe.skip(SkipReason.RECORD_NOT_FOUND)
            return
        if record.run_state != RunState.PAUSED:
            return
        # Wait on the engine's clock from the pause itself (the record's updated_at), not
        # from the event's publication time, which the streamer stamps with its own clock.
        # Events arrive in pause order, so waiting here holds up no run that is due sooner.
        await wf.clock.sleep_until(record.updated_at + resume_after)
        try:
            current = await wf.store.lookup(record.run_id)
        except RecordNotFound:
            return
        if current.run_state != RunState.PAUSED or current.meta.version != record.meta.version:
            return  # resumed, cancelled or paused again since; a new pause has its own event
        try:
            await wf.controller(current).transition(RunState.RUNNING, "")
        except (StaleRecord, InvalidRunStateTransition):
            return

    return consumer_process(
        wf,
        name=name,
        role=role,
        topic=run_state_change_topic(wf.name),
        handle=handle,
        polling=opts.polling_frequency,
        backoff=opts.err_backoff,
        lag_alert=lag_alert,
        keep=keep_run_state(RunState.PAUSED),
    )
