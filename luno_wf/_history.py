"""The history of a run, as stores keep it: :class:`HistoryEntry`."""

from __future__ import annotations

from datetime import datetime

import attrs

from ._runstate import RunState

__all__ = ["HistoryEntry"]


@attrs.frozen(kw_only=True)
class HistoryEntry:
    """One write of a run's record, as its history keeps it: the untyped wire form.

    A store that keeps history (:class:`~luno_wf.adapter.HistoryStore`) appends one entry
    with every write of a record, in the same transaction, keyed by ``(run_id, version)``:
    an entry exists if and only if that write happened. Its fields are the record's as
    stored.

    Attributes:
        workflow_name: The run's workflow.
        foreign_id: The run's foreign id.
        run_id: The run.
        version: The record's ``meta.version`` after the write.
        status: The integer value of the status written.
        run_state: The run state written.
        reason: The record's ``meta.run_state_reason``; emptied when the run's data is
            deleted.
        actor: The record's ``meta.actor``: what made the write.
        at: The record's ``updated_at``.
        error: The record's ``meta.error``; emptied when the run's data is deleted.
        trace_id: The record's ``meta.trace_id``; empty when none.
        object: The encoded object written, if the workflow keeps object snapshots
            (``None`` otherwise, and once the run's data is deleted).

    """

    workflow_name: str
    foreign_id: str
    run_id: str
    version: int
    status: int
    run_state: RunState
    reason: str
    actor: str
    at: datetime
    error: str
    trace_id: str
    object: bytes | None = None
