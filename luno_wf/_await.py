"""Waiting for a run to reach a status: :meth:`Workflow.await_status`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from ._actor import api_actor
from ._engine import Engine
from ._lookup import lookup_run
from ._processes._process import ensure_not_cancelled
from ._record import Record
from ._run import Run
from ._runstate import RunState
from ._types import S, T
from .errors import RecordNotFound, RunFinished

__all__ = ["await_status"]

R = TypeVar("R")


async def await_status(
    engine: Engine[T, S],
    foreign_id: str,
    run_id: str,
    status: S,
    poll_interval: timedelta,
    timeout: timedelta | None = None,
) -> Run[T, S]:
    """See :meth:`Workflow.await_status`."""
    if timeout is not None:
        waiting = await_status(engine, foreign_id, run_id, status, poll_interval)
        what = f"run {run_id!r} of {foreign_id!r} in workflow {engine.name!r} to reach {status!r}"
        return await _within(timeout, waiting, what)
    engine.check_foreign_id(foreign_id)
    engine.check_status(status)
    with engine.watches.watch(run_id) as watch:
        # An unknown run id fails at once (naming a swapped foreign id), not after a wait.
        record: Record | None = await lookup_run(engine.store, engine.name, run_id)
        while True:
            ensure_not_cancelled()
            candidates = [*watch.records] if record is None else [record, *watch.records]
            watch.records.clear()
            watch.changed.clear()
            for candidate in candidates:
                found = _reached(engine, candidate, foreign_id, status)
                if found is not None:
                    return found
            try:
                async with asyncio.timeout(poll_interval.total_seconds()):
                    await watch.changed.wait()
                record = None
            except TimeoutError:
                record = await _lookup(engine, run_id)


async def _within(timeout: timedelta, waiting: Awaitable[R], what: str) -> R:
    """``await waiting``, raising TimeoutError naming ``what`` after ``timeout`` (real time)."""
    deadline = asyncio.timeout(timeout.total_seconds())
    try:
        async with deadline:
            return await waiting
    except TimeoutError:
        if not deadline.expired():
            raise
        raise TimeoutError(f"timed out after {timeout} waiting for {what}") from None


async def _lookup(engine: Engine[T, S], run_id: str) -> Record | None:
    try:
        return await engine.store.lookup(run_id)
    except RecordNotFound:
        return None


def _reached(engine: Engine[T, S], record: Record, foreign_id: str, status: S) -> Run[T, S] | None:
    if record.workflow_name != engine.name or record.foreign_id != foreign_id:
        raise RecordNotFound(
            f"run is not a run of foreign id {foreign_id!r}",
            workflow_name=engine.name,
            foreign_id=foreign_id,
            run_id=record.run_id,
        )
    if record.status == int(status) and record.run_state not in (
        RunState.REQUESTED_DATA_DELETED,
        RunState.DATA_DELETED,
    ):
        return Run(
            record,
            engine.status_of(record),
            engine.codec.decode(record.object),
            engine.controller(record, api_actor(None)),
        )
    if record.run_state.finished():
        raise RunFinished(
            f"run finished ({record.run_state}) at status "
            f"{engine.status_of(record)!r} without reaching {status!r}",
            workflow_name=engine.name,
            foreign_id=foreign_id,
            run_id=record.run_id,
        )
    return None
