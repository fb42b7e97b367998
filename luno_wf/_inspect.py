"""A run's debug report: :class:`Inspection` and :meth:`Workflow.inspect`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic

import attrs

from ._engine import Engine
from ._lookup import lookup_own_run
from ._outbox import decode_outbox_data
from ._processes._pausing import DECODE_ERRORS
from ._processes.step import shard_names
from ._processes.timeout import poller_names
from ._processstate import ProcessState
from ._record import Record
from ._run import TypedRecord
from ._timeoutrecord import TimeoutRecord
from ._transition import Transition, run_history
from ._types import S, T
from .adapter import OutboxDataLister
from .errors import UnknownStatus

__all__ = ["OUTBOX_SCAN", "Inspection", "inspect_run"]

OUTBOX_SCAN = 1000
"""How many of the workflow's oldest unpublished outbox rows :func:`inspect_run` reads."""

_OBJECT_CHARS = 600  # of the object's JSON shown in the report
_CELL_CHARS = 40  # of a reason or an error in the history table


@attrs.frozen(kw_only=True)
class Inspection(Generic[T, S]):
    """Everything known about one run, for debugging it: ``print(await wf.inspect(run_id))``.

    Made by :meth:`Workflow.inspect`; ``str()`` of it is a readable multi-line report (long
    objects, reasons and errors trimmed: the fields keep them whole).

    Attributes:
        stored: The run's record as stored (the untyped wire form).
        record: The run with its status and object decoded; ``None`` if they do not decode
            (a note says why).
        history: The run's transitions, oldest first; empty (with a note) if not kept.
        timeouts: The run's pending timeouts (from the timeout store, if there is one).
        outbox_pending: Whether an event of the run waits in the outbox, unpublished. A
            bounded scan: only the workflow's :data:`OUTBOX_SCAN` oldest unpublished rows are
            read (a note says when there were more).
        error_counts: This process's count of the run's consecutive errors, by process name.
        role: The role that would move the run now: its status's step consumer (a step with
            several shards: one of their roles, decided by the event's id) and timeout
            poller, as text; empty when nothing would (a note says why).
        roles: Each of those roles and who holds it: ``"held by this process"``, ``"held by
            another process"`` or ``"not held by any process"``; ``"not held by this
            process"`` when the scheduler cannot tell whether another process holds it (a
            scheduler tells with a ``holds(role)`` method, as ``MemRoleScheduler`` has).
        notes: What the report could not find out, and why nothing moves the run.

    """

    stored: Record
    record: TypedRecord[T, S] | None
    history: list[Transition[S]]
    timeouts: list[TimeoutRecord]
    outbox_pending: bool
    error_counts: dict[str, int]
    role: str
    roles: dict[str, str]
    notes: list[str] = attrs.field(factory=list)

    def __str__(self) -> str:
        """The report: the record, its object, history, timeouts, outbox, errors and role."""
        return "\n".join(
            [
                *_record_lines(self),
                *_history_lines(self.history),
                *_other_lines(self),
            ]
        )


async def inspect_run(engine: Engine[T, S], run_id: str) -> Inspection[T, S]:
    """See :meth:`Workflow.inspect`."""
    stored = await lookup_own_run(engine.store, engine.name, run_id)
    notes: list[str] = []
    record = _typed(engine, stored, notes)
    history = await _history(engine, run_id, notes)
    timeouts = await _timeouts(engine, run_id)
    pending = await _outbox_pending(engine, run_id, notes)
    counts = {
        process: count
        for (process, errored), count in engine.errors.snapshot().items()
        if errored == run_id
    }
    role, roles = _roles(engine, stored, notes)
    return Inspection(
        stored=stored,
        record=record,
        history=history,
        timeouts=timeouts,
        outbox_pending=pending,
        error_counts=counts,
        role=role,
        roles=roles,
        notes=notes,
    )


def _typed(engine: Engine[T, S], stored: Record, notes: list[str]) -> TypedRecord[T, S] | None:
    try:
        return engine.typed(stored)
    except UnknownStatus as err:
        notes.append(f"status does not decode: {err}")
    except DECODE_ERRORS as err:
        notes.append(
            f"object does not decode as {engine.definition.object_type.__name__}: "
            f"{type(err).__name__}: {err}"
        )
    return None


async def _history(engine: Engine[T, S], run_id: str, notes: list[str]) -> list[Transition[S]]:
    if engine.history_store is None:
        notes.append(
            f"history not kept: the record store {type(engine.store).__name__} is not a "
            "HistoryStore"
        )
        return []
    try:
        history = await run_history(engine, run_id)
    except UnknownStatus as err:
        notes.append(f"history does not decode: {err}")
        return []
    if not history:
        off = "" if engine.settings.history else " (the workflow was built with history=False)"
        notes.append(f"no history entries for this run{off}")
    return history


async def _timeouts(engine: Engine[Any, Any], run_id: str) -> list[TimeoutRecord]:
    store = engine.timeout_store
    if store is None:
        return []
    return [row for row in await store.list(engine.name) if row.run_id == run_id]


async def _outbox_pending(engine: Engine[Any, Any], run_id: str, notes: list[str]) -> bool:
    store = engine.store
    if isinstance(store, OutboxDataLister):
        rows = await store.list_outbox_data(engine.name, OUTBOX_SCAN)
        found = any(data.run_id == run_id for _, data in rows)
        scanned = len(rows)
    else:
        events = await store.list_outbox_events(engine.name, OUTBOX_SCAN)
        found = any(_outbox_run(event.data) == run_id for event in events)
        scanned = len(events)
    if not found and scanned >= OUTBOX_SCAN:
        notes.append(
            f"the outbox holds more than {OUTBOX_SCAN} unpublished rows; only the oldest "
            f"{OUTBOX_SCAN} were searched for this run's"
        )
    return found


def _outbox_run(data: bytes) -> str:
    try:
        return decode_outbox_data(data).run_id
    except ValueError:
        return ""


def _roles(
    engine: Engine[Any, Any], stored: Record, notes: list[str]
) -> tuple[str, dict[str, str]]:
    """The role text and the holder of each role that would move the run."""
    if stored.run_state.finished():
        notes.append(f"the run is {stored.run_state}: nothing moves it any more")
        return "", {}
    definition, status = engine.definition, stored.status
    shards: list[tuple[str, str]] = []
    spec = definition.steps.get(status)
    if spec is not None:
        total = max(engine.resolve(spec.options).parallel_count, 1)
        shards = [shard_names(engine.name, spec, n, total) for n in range(1, total + 1)]
    pollers = []
    if status in definition.timeouts and engine.timeout_store is not None:
        pollers.append(poller_names(engine, status))
    if status in definition.callbacks:
        notes.append("a callback (Workflow.callback) can move the run; callbacks hold no role")
    if stored.run_state.stopped():
        notes.append(f"the run is {stored.run_state}: nothing moves it until it is resumed")
    if not shards and not pollers:
        return "", {}
    parts = []
    if len(shards) == 1:
        parts.append(shards[0][1])
    elif shards:
        parts.append(f"one of {', '.join(role for _, role in shards)} (chosen by event id)")
    parts.extend(f"{role} (timeouts)" for _, role in pollers)
    return "; ".join(parts), {role: _holder(engine, name, role) for name, role in shards + pollers}


def _holder(engine: Engine[Any, Any], process_name: str, role: str) -> str:
    if engine.states.snapshot().get(process_name) == ProcessState.RUNNING:
        return "held by this process"
    holds = getattr(engine.scheduler, "holds", None)
    if not callable(holds):
        return "not held by this process"
    return "held by another process" if holds(role) else "not held by any process"


# -- the report -----------------------------------------------------------------------------


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="milliseconds")


def _object_text(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    if len(text) <= _OBJECT_CHARS:
        return text
    return f"{text[:_OBJECT_CHARS]}... ({len(data)} bytes)"


def _record_lines(report: Inspection[Any, Any]) -> list[str]:
    stored, meta = report.stored, report.stored.meta
    typed = report.record
    status = f"{typed.status.name} ({stored.status})" if typed else str(stored.status)
    reason = f" - {meta.run_state_reason}" if meta.run_state_reason else ""
    lines = [
        f"Run {stored.run_id} of workflow {stored.workflow_name!r} "
        f"(foreign id {stored.foreign_id!r})",
        f"  status:     {status}",
        f"  run state:  {stored.run_state}{reason}",
        f"  version:    {meta.version}",
        f"  actor:      {meta.actor or '-'}",
    ]
    if meta.error:
        lines.append(f"  error:      {meta.error}")
    if meta.trace_id:
        lines.append(f"  trace id:   {meta.trace_id}")
    lines += [
        f"  created at: {_when(stored.created_at)}",
        f"  updated at: {_when(stored.updated_at)}",
        f"  object:     {_object_text(stored.object)}",
    ]
    return lines


def _cell(text: str) -> str:
    return text if len(text) <= _CELL_CHARS else f"{text[: _CELL_CHARS - 3]}..."


def _history_lines(history: Sequence[Transition[Any]]) -> list[str]:
    if not history:
        return ["History: none"]
    header = ("version", "status", "run state", "actor", "reason", "error", "at")
    rows = [
        (
            str(t.version),
            t.status.name,
            str(t.run_state),
            t.actor or "-",
            _cell(t.reason),
            _cell(t.error),
            _when(t.at),
        )
        for t in history
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    table = [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return ["History (oldest first):", *(line.rstrip() for line in table)]


def _other_lines(report: Inspection[Any, Any]) -> list[str]:
    lines = ["Timeouts:" if report.timeouts else "Timeouts: none"]
    lines += [
        f"  #{row.id} at status {row.status}, timer {row.timer}: due {_when(row.expire_at)}"
        for row in report.timeouts
    ]
    lines.append(
        "Outbox: an event of the run is not yet published"
        if report.outbox_pending
        else "Outbox: nothing pending"
    )
    if report.error_counts:
        lines.append("Errors in this process:")
        lines += [f"  {name}: {count}" for name, count in sorted(report.error_counts.items())]
    else:
        lines.append("Errors in this process: none")
    lines.append(f"Role: {report.role or 'none'}")
    lines += [f"  {role}: {holder}" for role, holder in report.roles.items()]
    if report.notes:
        lines.append("Notes:")
        lines += [f"  - {note}" for note in report.notes]
    return lines
