"""Automatic retry of paused runs (``build(pause_retry=...)``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .._actor import PAUSE_RETRY, compensating
from .._engine import Engine
from .._event import Event
from .._metrics import SkipReason
from .._naming import make_role, run_state_change_topic
from .._record import Record
from .._runstate import RunState
from .._tracing import Work
from ..errors import InvalidRunStateTransition, RecordNotFound, StaleRecord
from ._consumer import consumer_process, handling, intake_of
from ._pausing import AUTO_PAUSE_REASON
from ._process import LiveProcess
from .hook import keep_run_state

__all__ = ["PauseRetry", "process"]

NAME = "paused-records-retry-consumer"


def process(engine: Engine[Any, Any], resume_after: timedelta) -> LiveProcess:
    """The consumer that resumes each run paused after errors once paused ``resume_after``."""
    opts = engine.defaults
    lag_alert = resume_after * 3
    if lag_alert < timedelta(minutes=1):
        lag_alert = resume_after + timedelta(minutes=5)
    intake = intake_of(
        engine,
        NAME,
        topic=run_state_change_topic(engine.name),
        lag_alert=lag_alert,
        keep=keep_run_state(RunState.PAUSED),
    )
    return consumer_process(
        engine,
        name=NAME,
        role=make_role(engine.name, NAME),
        topic=run_state_change_topic(engine.name),
        polling=opts.polling_frequency,
        backoff=opts.err_backoff,
        session=handling(PauseRetry(engine, resume_after), intake),
    )


def paused_after_errors(record: Record) -> bool:
    """Whether the engine paused the run after errors (not a pause someone asked for).

    A run being compensated is never resumed, whatever its reason says.
    """
    return record.meta.run_state_reason.startswith(AUTO_PAUSE_REASON) and not compensating(record)


class PauseRetry:
    """Resumes a run the engine paused after errors, once it has been paused long enough.

    Pauses asked for through the API or from a step (``wf.pause(run_id, "fraud check")``)
    are never resumed automatically.
    """

    def __init__(self, engine: Engine[Any, Any], resume_after: timedelta) -> None:
        self._engine = engine
        self._resume_after = resume_after
        self._probe = engine.probe(NAME)
        self._activity = engine.states.activity(NAME)

    async def __call__(self, event: Event) -> None:
        engine = self._engine
        try:
            record = await engine.store.lookup(event.foreign_id)
        except RecordNotFound:
            self._probe.skip(SkipReason.RECORD_NOT_FOUND)
            return
        if record.run_state != RunState.PAUSED or not paused_after_errors(record):
            return  # a pause someone asked for stays until they resume it
        # Wait on the engine's clock from the pause itself (the record's updated_at), not
        # from the event's publication time, which the streamer stamps with its own clock.
        # Events arrive in pause order, so waiting here holds up no run that is due sooner.
        # Waiting, not busy: stop() need not let it finish (the event is redelivered).
        self._activity.waiting = True
        await engine.clock.sleep_until(record.updated_at + self._resume_after)
        self._activity.waiting = False
        try:
            current = await engine.store.lookup(record.run_id)
        except RecordNotFound:
            return
        if current.run_state != RunState.PAUSED or current.meta.version != record.meta.version:
            return  # resumed, cancelled or paused again since; a new pause has its own event
        with engine.tracing.span(Work.PAUSE_RETRY, current, headers=event.headers):
            try:
                await engine.controller(current, PAUSE_RETRY).transition(RunState.RUNNING, "")
            except (StaleRecord, InvalidRunStateTransition):
                return
