"""Where a run's history and inspection plug in: optional capabilities, found at run time.

A record store that keeps history (the ``HistoryStore`` capability of
:mod:`luno_wf.adapter`) has ``history(run_id)`` and ``prune_history(before, ...)``; a built
workflow may offer ``history(run_id)`` and ``inspect(run_id)``. Each is looked for when
used, so the operator surface shows history as soon as the store keeps it, and says so
plainly when it does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import attrs

from luno_wf import Record, RecordStore, RunState

from ._catalog import Catalog, LoadedWorkflow
from ._model import HistoryItem, HistoryView

__all__ = [
    "NO_HISTORY",
    "HistoryCapable",
    "PruneCapable",
    "inspection_report",
    "observed_item",
    "read_history",
]

NO_HISTORY = (
    "this store keeps no history: only the run's current record is known "
    "(a record store with the HistoryStore capability records every write)"
)


@runtime_checkable
class HistoryCapable(Protocol):
    """A record store, or a workflow, that can tell a run's history."""

    async def history(self, run_id: str) -> Sequence[Any]:
        """The run's writes, oldest first."""
        ...


@runtime_checkable
class PruneCapable(Protocol):
    """A record store that can forget old history."""

    async def prune_history(
        self, before: datetime, *, workflow_name: str | None = None, batch_size: int = 1000
    ) -> int:
        """Delete entries older than ``before`` (never a run's newest); how many went."""
        ...


def _item(entry: Any, loaded: LoadedWorkflow | None, description: str) -> HistoryItem:
    status = int(getattr(entry, "status", 0))
    name = loaded.status_name(status) if loaded else getattr(entry, "status_description", "")
    at = getattr(entry, "at", None) or getattr(entry, "updated_at", None)
    return HistoryItem(
        version=int(getattr(entry, "version", 0)),
        status=status,
        status_name=name or description or str(status),
        run_state=RunState(int(getattr(entry, "run_state", 0))),
        reason=str(getattr(entry, "reason", "") or ""),
        actor=str(getattr(entry, "actor", "") or ""),
        at=at if isinstance(at, datetime) else datetime.fromtimestamp(0, UTC),
        error=str(getattr(entry, "error", "") or ""),
        trace_id=str(getattr(entry, "trace_id", "") or ""),
    )


async def read_history(store: RecordStore, catalog: Catalog, record: Record) -> HistoryView:
    """The run's history from the store's capability, else the workflow's, else a note."""
    loaded = catalog.get(record.workflow_name)
    source: Any = None
    if isinstance(store, HistoryCapable):
        source = store
    elif loaded is not None and isinstance(loaded.workflow, HistoryCapable):
        source = loaded.workflow
    if source is None:
        return HistoryView(available=False, items=[], note=NO_HISTORY)
    entries = await source.history(record.run_id)
    # Status names: the enum's when loaded; else the record's description where it is the
    # status the record is at now (a history entry does not carry the description).
    items = []
    for entry in entries:
        same = int(getattr(entry, "status", -1)) == record.status
        items.append(_item(entry, loaded, record.meta.status_description if same else ""))
    return HistoryView(available=True, items=items)


def observed_item(record: Record, catalog: Catalog) -> HistoryItem:
    """A record as one history item: what following a run without history can show."""
    return HistoryItem(
        version=record.meta.version,
        status=record.status,
        status_name=catalog.status_name(
            record.workflow_name, record.status, record.meta.status_description
        ),
        run_state=record.run_state,
        reason=record.meta.run_state_reason,
        actor=str(getattr(record.meta, "actor", "") or ""),
        at=record.updated_at,
        error=str(getattr(record.meta, "error", "") or ""),
        trace_id=str(getattr(record.meta, "trace_id", "") or ""),
    )


HIDDEN_OBJECT = b"(not shown here: see the object, as the redaction hook shows it)"


async def inspection_report(
    loaded: LoadedWorkflow | None, run_id: str, *, hide_object: bool = False
) -> str:
    """The workflow's own inspection report of the run, when it offers ``inspect()``.

    Empty when the workflow does not know the run: it may be built on another store (an
    application module loaded only to decode objects). With ``hide_object`` the report
    shows neither the object nor the text of a decoding error (which may quote it); a
    report that cannot be rebuilt without them is not shown at all.
    """
    if loaded is None:
        return ""
    inspect = getattr(loaded.workflow, "inspect", None)
    if inspect is None or not callable(inspect):
        return ""
    try:
        report = await inspect(run_id)
    except LookupError:
        return ""
    if not hide_object:
        return str(report)
    return _without_object(report)


def _without_object(report: Any) -> str:
    stored = getattr(report, "stored", None)
    if not attrs.has(type(report)) or not isinstance(stored, Record):
        return ""
    notes = [
        note.split(":")[0] if note.startswith("object does not decode") else note
        for note in getattr(report, "notes", [])
    ]
    hidden = attrs.evolve(stored, object=HIDDEN_OBJECT)
    return str(attrs.evolve(report, stored=hidden, notes=notes))
