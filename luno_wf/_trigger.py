"""Starting runs: :meth:`Workflow.trigger` and scheduled triggers."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from ._actor import API, api_actor
from ._engine import Engine
from ._outbox import new_uuid4
from ._record import Meta, Record
from ._runstate import RunState
from ._types import S, T
from .errors import UnknownStatus

__all__ = ["start_run", "trace_origin", "trigger"]


async def trigger(
    engine: Engine[T, S],
    foreign_id: str,
    initial_value: T | None,
    start_at: S | None,
    actor: str | None = None,
) -> str:
    """Check the arguments of :meth:`Workflow.trigger`, then start the run."""
    engine.check_foreign_id(foreign_id)
    writer = api_actor(actor)
    definition = engine.definition
    start = definition.default_start if start_at is None else engine.check_status(start_at)
    if definition.graph.is_terminal(int(start)):
        raise UnknownStatus(
            f"cannot start a run at terminal status {start!r}: nothing would ever move it",
            workflow_name=engine.name,
            foreign_id=foreign_id,
            status=int(start),
        )
    value = _initial_value(definition.object_type, initial_value)
    return await start_run(engine, foreign_id, start, value, trace_origin(), writer)


def _initial_value(object_type: type[Any], initial_value: object) -> Any:
    if initial_value is None:
        try:
            return object_type()
        except TypeError as err:
            raise TypeError(
                f"{object_type.__name__}() needs arguments; pass initial_value= to trigger: {err}"
            ) from None
    if isinstance(object_type, type) and not isinstance(initial_value, object_type):
        raise TypeError(
            f"initial_value must be a {object_type.__name__}, got {type(initial_value).__name__}"
        )
    return initial_value


async def start_run(
    engine: Engine[T, S],
    foreign_id: str,
    start: S,
    initial_value: T,
    origin: str,
    actor: str = API,
) -> str:
    """Write a new run of ``foreign_id`` at ``start`` (one write, by ``actor``); its run id.

    The write is made in the trigger's span, whose trace context the run then carries.
    """
    now = engine.clock.now()
    run_id = new_uuid4()
    tracing = engine.tracing
    with tracing.trigger(foreign_id, run_id, start.name):
        # The trigger span's context (or the caller's, when no span is recorded): the run
        # carries it on every write and event.
        traceparent, tracestate = tracing.carrier()
        record = Record(
            workflow_name=engine.name,
            foreign_id=foreign_id,
            run_id=run_id,
            run_state=RunState.INITIATED,
            status=int(start),
            object=engine.codec.encode(initial_value),
            created_at=now,
            updated_at=now,
            meta=Meta(
                status_description=start.name,
                version=1,
                trace_origin=origin,
                actor=actor,
                traceparent=traceparent,
                tracestate=tracestate,
            ),
        )
        await engine.write(record, RunState.UNKNOWN)
    return run_id


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_ASYNCIO_DIR = os.path.dirname(os.path.abspath(asyncio.__file__))


def trace_origin(limit: int = 8) -> str:
    """The caller's frames outside luno_wf and asyncio, innermost first, one per line."""
    lines: list[str] = []
    frame = sys._getframe(2)  # past this function and trigger(), both ours
    while frame is not None and len(lines) < limit:
        filename = frame.f_code.co_filename
        if filename.startswith(_ASYNCIO_DIR):
            break  # the event loop's own frames: nothing of the caller's beyond
        if not filename.startswith(_PACKAGE_DIR):
            lines.append(f"{filename}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back  # type: ignore[assignment]
    return "\n".join(lines)
