"""Callbacks: run synchronously inside :meth:`Workflow.callback`."""

from __future__ import annotations

from typing import Any

from .._actor import api_actor, process_actor
from .._definition import CallbackSpec
from .._engine import Engine
from .._record import Record
from .._run import RUN_STATE_UPDATED
from .._tracing import Work
from ..errors import CallbackNotAccepted, RecordNotFound, UnknownStatus
from ._update import apply_result

__all__ = ["deliver_callback"]


async def deliver_callback(
    engine: Engine[Any, Any],
    foreign_id: str,
    status: Any,
    payload: bytes,
    run_id: str | None = None,
    actor: str | None = None,
) -> None:
    """Hand ``payload`` to the callbacks of ``status`` for a run of ``foreign_id``.

    The run is ``run_id`` if given, else the foreign id's latest run. The write names
    ``actor``, else the calling connector, else ``"callback:<STATUS>"``.

    Callbacks are tried in the order added; the first that moves the run (or saves it) ends
    the delivery. Errors of the callback function propagate to the caller unchanged.
    """
    status_type = engine.definition.status_type
    if not isinstance(status, status_type):
        raise UnknownStatus(
            f"status must be a member of {status_type.__name__}, got {status!r}",
            workflow_name=engine.name,
        )
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError(f"callback payload must be bytes, got {type(payload).__name__}")
    specs = engine.definition.callbacks.get(int(status))
    if not specs:
        raise CallbackNotAccepted(
            f"no callback is configured for status {status!r}",
            workflow_name=engine.name,
            foreign_id=foreign_id,
            status=int(status),
        )
    record = await _target(engine, foreign_id, run_id)
    if record.status != int(status) or record.run_state.stopped() or record.run_state.finished():
        raise CallbackNotAccepted(
            f"no run is waiting in {status!r} for a callback: the "
            f"{'latest run' if run_id is None else 'run'} is at "
            f"{engine.status_of(record)!r} ({record.run_state})",
            workflow_name=engine.name,
            foreign_id=foreign_id,
            run_id=record.run_id,
            status=int(status),
        )
    writer = api_actor(actor, process_actor("callback", status.name))
    with engine.tracing.span(Work.CALLBACK, record, caller=True):
        await _run_callbacks(engine, specs, record, int(status), bytes(payload), writer)


async def _target(engine: Engine[Any, Any], foreign_id: str, run_id: str | None) -> Record:
    if run_id is None:
        return await engine.store.latest(engine.name, foreign_id)
    record = await engine.store.lookup(run_id)
    if record.workflow_name != engine.name or record.foreign_id != foreign_id:
        raise RecordNotFound(
            f"run {run_id} is not a run of foreign id {foreign_id!r}",
            workflow_name=engine.name,
            foreign_id=foreign_id,
            run_id=run_id,
        )
    return record


async def _run_callbacks(
    engine: Engine[Any, Any],
    specs: tuple[CallbackSpec, ...],
    record: Record,
    status: int,
    data: bytes,
    actor: str,
) -> None:
    for spec in specs:
        run = engine.build_run(record, actor)
        result = await spec.fn(run, data)
        if result is RUN_STATE_UPDATED or await apply_result(engine, status, result, run, actor):
            return
