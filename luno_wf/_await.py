"""Waiting for a run to reach a status: :meth:`Workflow.await_status`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from ._lookup import lookup_run
from ._processes._loop import ensure_not_cancelled
from ._record import Record
from ._run import Run
from ._runstate import RunState
from ._types import S, T
from .errors import RecordNotFound, RunFinished

if TYPE_CHECKING:
    from ._workflow import Workflow

__all__ = ["Watch", "await_status"]

R = TypeVar("R")


class Watch:
    """Records this process wrote for one run, for :meth:`Workflow.await_status`."""

    __slots__ = ("changed", "records")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.changed = asyncio.Event()


async def await_status(
    wf: Workflow[T, S],
    foreign_id: str,
    run_id: str,
    status: S,
    poll_interval: timedelta,
    timeout: timedelta | None = None,
) -> Run[T, S]:
    """See :meth:`Workflow.await_status`."""
    if timeout is not None:
        waiting = await_status(wf, foreign_id, run_id, status, poll_interval)
        what = f"run {run_id!r} of {foreign_id!r} in workflow {wf.name!r} to reach {status!r}"
        return await _within(timeout, waiting, what)
    wf.check_foreign_id(foreign_id)
    wf.check_status(status)
    watch = Watch()
    wf.watches.setdefault(run_id, []).append(watch)
    try:
        record: Record | None = await lookup_run(wf.store, wf.name, run_id)
        while True:
            ensure_not_cancelled()
            candidates = [*watch.records] if record is None else [record, *watch.records]
            watch.records.clear()
            watch.changed.clear()
            for candidate in candidates:
                found = _reached(wf, candidate, foreign_id, status)
                if found is not None:
                    return found
            try:
                async with asyncio.timeout(poll_interval.total_seconds()):
                    await watch.changed.wait()
                record = None
            except TimeoutError:
                try:
                    record = await wf.store.lookup(run_id)
                except RecordNotFound:
                    record = None
    finally:
        watches = wf.watches[run_id]
        watches.remove(watch)
        if not watches:
            del wf.watches[run_id]


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


def _reached(wf: Workflow[T, S], record: Record, foreign_id: str, status: S) -> Run[T, S] | None:
    if record.workflow_name != wf.name or record.foreign_id != foreign_id:
        raise RecordNotFound(
            f"run is not a run of foreign id {foreign_id!r}",
            workflow_name=wf.name,
            foreign_id=foreign_id,
            run_id=record.run_id,
        )
    if record.status == int(status) and record.run_state not in (
        RunState.REQUESTED_DATA_DELETED,
        RunState.DATA_DELETED,
    ):
        return Run(
            record,
            wf.status_of(record),
            wf.codec.decode(record.object),
            wf.controller(record),
        )
    if record.run_state.finished():
        raise RunFinished(
            f"run finished ({record.run_state}) at status "
            f"{wf.status_of(record)!r} without reaching {status!r}",
            workflow_name=wf.name,
            foreign_id=foreign_id,
            run_id=record.run_id,
        )
    return None
