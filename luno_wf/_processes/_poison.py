"""Poison events: set aside as dead letters so that one bad event never halts a consumer."""

from __future__ import annotations

from typing import Any

import attrs

from .._deadletter import DeadLetter
from .._engine import Engine
from .._event import Event
from .._metrics import SkipReason
from .._outbox import new_uuid4
from .._runstate import RunState
from ..adapter import DeadLetterStore
from ..errors import (
    CorruptRecord,
    InvalidRunStateTransition,
    PoisonEvent,
    RecordNotFound,
    StaleRecord,
)

__all__ = ["POISON", "SET_ASIDE_REASON", "SetAside"]

POISON = (PoisonEvent, CorruptRecord)
"""What a handler raises for an event that no retry can fix."""

SET_ASIDE_REASON = "event set aside"
"""Prefix of the pause reason of a run whose event was set aside."""


class SetAside:
    """What one consumer does with a poison event.

    It logs the event at ERROR with every field and the reason, counts it (skip reason
    ``event set aside``), keeps it as a :class:`~luno_wf.DeadLetter` if the record store is
    a :class:`~luno_wf.adapter.DeadLetterStore`, and pauses the event's run with the reason
    where there is a running run to pause (actor ``set-aside:<process name>``, the error in
    ``meta.error``). The caller then acknowledges the event. If the dead letter cannot be
    stored, the error propagates and the event is redelivered: it is never dropped
    unrecorded.
    """

    def __init__(self, engine: Engine[Any, Any], process_name: str, topic: str) -> None:
        self._engine = engine
        self._process_name = process_name
        self._topic = topic
        self._probe = engine.probe(process_name)
        store = engine.store
        self._letters = store if isinstance(store, DeadLetterStore) else None

    async def __call__(self, event: Any, error: Exception) -> None:
        engine = self._engine
        reason = f"{type(error).__name__}: {error}"
        engine.logger.error(
            "setting aside an event no consumer can act on [process=%s] [topic=%s]: %s; event: %r",
            self._process_name,
            self._topic,
            reason,
            event,
        )
        self._probe.skip(SkipReason.SET_ASIDE)
        if not isinstance(event, Event):
            return  # a connector's event: logged; the connector's source keeps it
        if self._letters is not None:
            await self._letters.set_aside(
                DeadLetter(
                    id=new_uuid4(),
                    workflow_name=engine.name,
                    process_name=self._process_name,
                    topic=self._topic,
                    event=event,
                    reason=reason,
                    at=engine.clock.now(),
                )
            )
        await self._pause(event.foreign_id, reason)

    async def _pause(self, run_id: str, reason: str) -> None:
        engine = self._engine
        try:
            record = await engine.store.lookup(run_id)
        except (RecordNotFound, CorruptRecord):
            return  # no run to pause, or none that can be read
        if record.workflow_name != engine.name or record.run_state not in (
            RunState.INITIATED,
            RunState.RUNNING,
        ):
            return
        if record.run_state == RunState.INITIATED:
            record = attrs.evolve(record, run_state=RunState.RUNNING)
        try:
            await engine.controller(record, f"set-aside:{self._process_name}").transition(
                RunState.PAUSED, f"{SET_ASIDE_REASON}: {reason}", error=reason
            )
        except (StaleRecord, InvalidRunStateTransition):
            return  # moved meanwhile: its newer event carries on
