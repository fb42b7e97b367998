"""The stored form of a run: :class:`Record` and its :class:`Meta`."""

from __future__ import annotations

from datetime import datetime

import attrs

from ._runstate import RunState

__all__ = ["Meta", "Record"]


@attrs.frozen(kw_only=True)
class Meta:
    """Engine bookkeeping stored beside a record.

    Stores keep every field, and read records written before a field existed with its
    default.

    Attributes:
        run_state_reason: Why the run is in its current run state (set by pause, cancel and
            data deletion; cleared by resume).
        status_description: The name of the status at the last write.
        version: Incremented by one on every write; 1 after trigger. The record store's
            compare-and-set key.
        trace_origin: The caller's frames at trigger time, one per line.
        actor: What made this write, e.g. ``"step:CREATED"``, ``"api"`` or
            ``"operator:alice"``; kept in the run's history.
        error: The error text, when the engine paused the run after errors.
        trace_id: The trace id of the span that made this write; empty when none.
        traceparent: The W3C ``traceparent`` of the trace context the run was triggered in
            (empty when there was none); every event of the run carries it.
        tracestate: The W3C ``tracestate`` that goes with ``traceparent`` (often empty).

    """

    run_state_reason: str = ""
    status_description: str = ""
    version: int = 0
    trace_origin: str = ""
    actor: str = ""
    error: str = ""
    trace_id: str = ""
    traceparent: str = ""
    tracestate: str = ""


@attrs.frozen(kw_only=True)
class Record:
    """One run of a workflow as stored: the untyped wire form, shared with adapters.

    ``status`` is the integer value of the user's status enum and ``object`` the encoded
    object; :class:`luno_wf.TypedRecord` is the typed view handed to user code.
    """

    workflow_name: str
    foreign_id: str
    run_id: str
    run_state: RunState
    status: int
    object: bytes
    created_at: datetime
    updated_at: datetime
    meta: Meta = attrs.field(factory=Meta)
