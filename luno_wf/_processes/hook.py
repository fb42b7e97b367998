"""Run-state-change hook consumers: on_complete, on_pause, on_cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._actor import compensating
from .._engine import Engine
from .._event import Event, Header
from .._metrics import SkipReason
from .._naming import make_role, run_state_change_topic
from .._runstate import RunState
from .._tracing import Work
from .._types import AnyFunc
from ..errors import RecordNotFound
from ._consumer import consumer_process, handling, intake_of
from ._pausing import DECODE_ERRORS
from ._process import LiveProcess

__all__ = ["HookHandler", "keep_run_state", "process"]


def keep_run_state(run_state: RunState) -> Callable[[Event], bool]:
    """A filter keeping run-state-change events of ``run_state`` (and events without one)."""
    wanted = str(int(run_state))

    def keep(event: Event) -> bool:
        return event.headers.get(Header.RUN_STATE, wanted) == wanted

    return keep


def process(engine: Engine[Any, Any], run_state: RunState) -> LiveProcess:
    """The consumer calling the hook registered for ``run_state``.

    Each hook has its own consumer, so a failing hook (retried with back-off) never holds
    up the others.
    """
    label = str(run_state)
    name = make_role(label, "run-state-change-hook-consumer")
    opts = engine.defaults
    handler = HookHandler(engine, run_state, engine.definition.hooks[run_state], name)
    intake = intake_of(
        engine,
        name,
        topic=run_state_change_topic(engine.name),
        lag_alert=opts.lag_alert,
        keep=keep_run_state(run_state),
    )
    return consumer_process(
        engine,
        name=name,
        role=make_role(engine.name, label, "run-state-change-hook-consumer"),
        topic=run_state_change_topic(engine.name),
        polling=opts.polling_frequency,
        backoff=opts.err_backoff,
        session=handling(handler, intake),
    )


class HookHandler:
    """Calls a hook with the run a run-state-change event announces, if it still applies.

    A run paused for compensation (``Workflow.compensate``) is not reported to ``on_pause``:
    neither its pause nor the writes that record compensation progress.
    """

    def __init__(
        self, engine: Engine[Any, Any], run_state: RunState, hook: AnyFunc, name: str
    ) -> None:
        self._engine = engine
        self._run_state = run_state
        self._hook = hook
        self._name = name
        self._probe = engine.probe(name)

    async def __call__(self, event: Event) -> None:
        engine = self._engine
        try:
            record = await engine.store.lookup(event.foreign_id)
        except RecordNotFound:
            self._probe.skip(SkipReason.RECORD_NOT_FOUND)
            return
        # A run that has moved on (resumed, say) is not reported; a completed run whose data
        # was deleted since is still reported as completed.
        if record.run_state != self._run_state and not (
            self._run_state == RunState.COMPLETED and record.run_state.finished()
        ):
            return
        if self._run_state == RunState.PAUSED and compensating(record):
            return  # paused for compensation: not a pause to report (on_cancel ends it)
        try:
            typed = engine.typed(record)
        except DECODE_ERRORS as err:
            engine.logger.error("hook %s: cannot decode run %s: %s", self._name, record.run_id, err)
            self._probe.skip(SkipReason.UNABLE_TO_UNMARSHAL_OBJECT)
            return
        with engine.tracing.span(
            Work.HOOK, record, headers=event.headers, detail=self._run_state.name
        ):
            await self._hook(typed)
