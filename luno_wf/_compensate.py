"""Compensation (:meth:`Workflow.compensate`): undo the statuses a run entered, then cancel it.

The steps, each one compare-and-set write of the run's record:

1. **Claim.** The run is paused (or, if already paused, written again) with the reason
   ``compensating: <reason>``: steps stop moving it, the paused-run retry and the
   ``on_pause`` hook leave it alone, and a concurrent writer's stale write is refused.
2. **Undo.** The statuses the run *entered* are read from its history: the entries whose
   status differs from the entry before (the first entry enters the start status). Newest
   first, down to (excluding) the newest entry of ``to``, each one with a compensation
   function gets it called, then a progress write records that entry as done (actor
   ``compensated:<entry version>``, the object as the function left it).
3. **Cancel** the run with the reason.

A crash (or a failing compensation function) leaves the run paused for compensation;
calling ``compensate`` again claims it again and skips the entries already marked done.
So a compensation function runs once per entry while its process survives, at least once
if it does not (a crash between the function and its progress write reruns it).
"""

from __future__ import annotations

from typing import Any

import attrs

from ._actor import COMPENSATE, COMPENSATED, COMPENSATING, api_actor
from ._engine import Engine
from ._history import HistoryEntry
from ._lookup import lookup_own_run
from ._record import Record
from ._run import Run, RunStateController
from ._runstate import RunState
from ._tracing import Work
from ._transition import history_store
from .errors import HistoryNotKept, StaleRecord, UnableToCompensate, WorkflowError

__all__ = ["compensate", "entered", "plan"]

_ATTEMPTS = 3  # claims tried against a run that keeps moving
_COMPENSABLE = frozenset((RunState.INITIATED, RunState.RUNNING, RunState.PAUSED))


async def compensate(
    engine: Engine[Any, Any], run_id: str, reason: str, to: Any, actor: str | None
) -> None:
    """See :meth:`Workflow.compensate` and the module docstring."""
    if not isinstance(reason, str):
        raise TypeError(f"reason must be a str, got {reason!r}")
    target = None if to is None else int(engine.check_status(to))
    history_store(engine, run_id)
    if not engine.settings.history:
        raise HistoryNotKept(
            "compensation needs the run's history, and this workflow was built with "
            "history=False: build it with history=True (the default)",
            workflow_name=engine.name,
            run_id=run_id,
        )
    writer = api_actor(actor, COMPENSATE)
    async with engine.run_locks.hold(run_id):
        record, todo = await _claim(engine, run_id, reason, target, writer)
        with engine.tracing.span(Work.COMPENSATE, record, caller=True):
            for version, status in todo:
                record = await _undo(engine, record, version, status)
            await engine.controller(record, writer).transition(RunState.CANCELLED, reason)


async def _claim(
    engine: Engine[Any, Any], run_id: str, reason: str, target: int | None, actor: str
) -> tuple[Record, list[tuple[int, int]]]:
    """Pause the run for compensation; returns it and the entries to undo, newest first."""
    store = history_store(engine, run_id)
    for attempt in range(_ATTEMPTS):
        record = await lookup_own_run(engine.store, engine.name, run_id)
        if record.run_state not in _COMPENSABLE:
            raise UnableToCompensate(
                f"cannot compensate a run that is {record.run_state}: only a running or "
                "paused run can be compensated",
                workflow_name=engine.name,
                foreign_id=record.foreign_id,
                run_id=run_id,
            )
        entries = await store.history(run_id)
        if not entries:
            raise HistoryNotKept(
                "the run has no history entries (written while history was off, or pruned): "
                "nothing tells which statuses it entered",
                workflow_name=engine.name,
                foreign_id=record.foreign_id,
                run_id=run_id,
            )
        todo = plan(engine, entries, target)
        claimed = attrs.evolve(
            record,
            run_state=RunState.PAUSED,
            updated_at=engine.clock.now(),
            meta=attrs.evolve(
                record.meta,
                run_state_reason=f"{COMPENSATING}{reason}",
                version=record.meta.version + 1,
                actor=actor,
                error="",
            ),
        )
        try:
            await engine.write(claimed, record.run_state)
        except StaleRecord:
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        return claimed, todo
    raise AssertionError("unreachable")


def entered(entries: list[HistoryEntry]) -> list[HistoryEntry]:
    """The entries in which the run entered a status, oldest first."""
    return [
        entry for i, entry in enumerate(entries) if i == 0 or entry.status != entries[i - 1].status
    ]


def plan(
    engine: Engine[Any, Any], entries: list[HistoryEntry], target: int | None
) -> list[tuple[int, int]]:
    """``(entry version, status)`` of each entry to undo, newest first.

    Entered statuses with a compensation function, down to (excluding) the newest entry
    of ``target``, less those a progress write marks done.

    Raises:
        ValueError: The run never entered ``target``.

    """
    done = {
        int(entry.actor[len(COMPENSATED) :])
        for entry in entries
        if entry.actor.startswith(COMPENSATED) and entry.actor[len(COMPENSATED) :].isdigit()
    }
    steps = entered(entries)
    if target is not None and all(entry.status != target for entry in steps):
        raise ValueError(
            f"the run never entered {engine.definition.status_name(target)}: "
            "there is nothing to compensate down to"
        )
    compensations = engine.definition.compensations
    todo = []
    for entry in reversed(steps):
        if entry.status == target:
            break
        if entry.status in compensations and entry.version not in done:
            todo.append((entry.version, entry.status))
    return todo


class _NoRunStateControl(RunStateController):
    """A compensation's run cannot pause or cancel itself: compensation decides that."""

    async def transition(self, target: RunState, reason: str, *, error: str = "") -> Record:
        raise WorkflowError(
            "a compensation function cannot pause or cancel its run: raise to stop the "
            "compensation (calling compensate again resumes it where it stopped)",
            workflow_name=self.record.workflow_name,
            run_id=self.record.run_id,
        )


async def _undo(engine: Engine[Any, Any], record: Record, version: int, status: int) -> Record:
    """Call the compensation of ``status`` for entry ``version``, then record it as done."""
    controller = _NoRunStateControl(record, engine.write, engine.clock.now)
    run: Run[Any, Any] = Run(
        record, engine.definition.members[status], engine.codec.decode(record.object), controller
    )
    await engine.definition.compensations[status](run)
    done = attrs.evolve(
        record,
        object=engine.codec.encode(run.object),
        updated_at=engine.clock.now(),
        meta=attrs.evolve(
            record.meta,
            version=record.meta.version + 1,
            actor=f"{COMPENSATED}{version}",
            error="",
        ),
    )
    await engine.write(done, RunState.PAUSED)
    engine.debug_log("compensated", run_id=record.run_id, entry=version, status=status)
    return done
