"""What the service layer hands to its front ends: queries, rows, pages, counts, results."""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from luno_wf import RunState

__all__ = [
    "ActionResult",
    "BulkPreview",
    "BulkResult",
    "ConsumerLag",
    "HistoryItem",
    "HistoryView",
    "Inspection",
    "LagView",
    "OutboxStat",
    "Page",
    "RunDetail",
    "RunQuery",
    "RunRow",
    "StatusCount",
    "Verb",
    "WorkflowSummary",
    "parse_run_state",
    "run_state_name",
]


def run_state_name(state: RunState) -> str:
    """The stable name of a run state in JSON and URLs: the member name, ``"RUNNING"``."""
    return state.name


def parse_run_state(text: str) -> RunState:
    """A run state from its member name, luno's text or its number, in any case.

    ``"RUNNING"``, ``"running"``, ``"Requested Data Deleted"``, ``"requested-data-deleted"``
    and ``"7"`` all parse.

    Raises:
        ValueError: No run state has that name.

    """
    cleaned = text.strip()
    if cleaned.isdigit():
        try:
            return RunState(int(cleaned))
        except ValueError:
            pass
    key = cleaned.upper().replace(" ", "_").replace("-", "_")
    try:
        return RunState[key]
    except KeyError:
        names = ", ".join(s.name for s in RunState if s.valid())
        raise ValueError(f"unknown run state {text!r}; one of {names}") from None


class Verb(enum.Enum):
    """An operator's action on a run: each is one run-state move."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    DELETE_DATA = "delete-data"

    @property
    def target(self) -> RunState:
        """The run state the action moves a run to."""
        return _TARGETS[self]

    @property
    def needs_reason(self) -> bool:
        """Whether the action is refused without a reason (cancel and delete data)."""
        return self in (Verb.CANCEL, Verb.DELETE_DATA)

    @property
    def past(self) -> str:
        """What the action did, for messages: ``"paused"``, ``"data deletion requested"``."""
        return _PAST[self]

    @property
    def label(self) -> str:
        """The action for buttons and messages: ``"Delete data"``."""
        return self.value.replace("-", " ").capitalize()

    def allowed_from(self) -> frozenset[RunState]:
        """The run states a run can be in for this action to apply.

        As the engine does, a run not yet picked up (INITIATED) counts as RUNNING.
        """
        target = self.target
        return frozenset(
            state
            for state in RunState
            if state.valid() and _effective(state).can_transition_to(target)
        )

    def applies_to(self, state: RunState) -> bool:
        """Whether a run in ``state`` can take this action."""
        return _effective(state).can_transition_to(self.target)


def _effective(state: RunState) -> RunState:
    return RunState.RUNNING if state == RunState.INITIATED else state


_TARGETS = {
    Verb.PAUSE: RunState.PAUSED,
    Verb.RESUME: RunState.RUNNING,
    Verb.CANCEL: RunState.CANCELLED,
    Verb.DELETE_DATA: RunState.REQUESTED_DATA_DELETED,
}
_PAST = {
    Verb.PAUSE: "paused",
    Verb.RESUME: "resumed",
    Verb.CANCEL: "cancelled",
    Verb.DELETE_DATA: "data deletion requested",
}


@attrs.frozen(kw_only=True)
class RunQuery:
    """Which runs to list, count or act on; every field narrows (all must hold).

    Attributes:
        workflow: Runs of this workflow only.
        statuses: Status names (``"CREATED"``, any case) or numbers; a run matches one of
            them. A name matches the status the run's record describes
            (``meta.status_description``) and, for a loaded workflow, its enum member.
        run_states: The run must be in one of these.
        foreign_id: Runs of this foreign id only.
        created_after: Created strictly after this moment.
        created_before: Created strictly before this moment.
        updated_after: Last written strictly after this moment.
        updated_before: Last written strictly before this moment.

    """

    workflow: str | None = None
    statuses: tuple[str, ...] = ()
    run_states: tuple[RunState, ...] = ()
    foreign_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None

    def narrowed(self, run_states: frozenset[RunState]) -> RunQuery:
        """This query, further limited to runs in ``run_states``."""
        if self.run_states:
            kept = tuple(s for s in self.run_states if s in run_states)
        else:
            kept = tuple(sorted(run_states))
        return attrs.evolve(self, run_states=kept)

    def to_params(self) -> list[tuple[str, str]]:
        """The query as URL query parameters (the web UI keeps filters in the URL)."""
        params: list[tuple[str, str]] = []
        if self.workflow:
            params.append(("workflow", self.workflow))
        params.extend(("status", s) for s in self.statuses)
        params.extend(("run_state", run_state_name(s)) for s in self.run_states)
        if self.foreign_id:
            params.append(("foreign_id", self.foreign_id))
        for name in ("created_after", "created_before", "updated_after", "updated_before"):
            moment: datetime | None = getattr(self, name)
            if moment is not None:
                params.append((name, moment.isoformat()))
        return params

    def is_empty(self) -> bool:
        """Whether the query matches every run."""
        return not self.to_params()


@attrs.frozen(kw_only=True)
class RunRow:
    """A run as listed: its record without the object."""

    workflow_name: str
    foreign_id: str
    run_id: str
    status: int
    status_name: str
    run_state: RunState
    version: int
    created_at: datetime
    updated_at: datetime
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """The row as JSON data, the stable form of ``-o json``."""
        return {
            "workflow_name": self.workflow_name,
            "foreign_id": self.foreign_id,
            "run_id": self.run_id,
            "status": self.status_name,
            "status_value": self.status,
            "run_state": run_state_name(self.run_state),
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "run_state_reason": self.reason,
        }


@attrs.frozen(kw_only=True)
class Page:
    """One page of runs, newest first, and the cursor of the next page (None at the end)."""

    rows: list[RunRow]
    next_cursor: str | None


@attrs.frozen(kw_only=True)
class StatusCount:
    """How many runs of a workflow are at one status in one run state."""

    workflow_name: str
    status: int
    status_name: str
    run_state: RunState
    count: int

    def to_json(self) -> dict[str, Any]:
        """The count as JSON data."""
        return {
            "workflow_name": self.workflow_name,
            "status": self.status_name,
            "status_value": self.status,
            "run_state": run_state_name(self.run_state),
            "count": self.count,
        }


@attrs.frozen(kw_only=True)
class OutboxStat:
    """The unpublished outbox rows of one workflow."""

    workflow_name: str
    pending: int
    oldest: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The stat as JSON data."""
        return {
            "workflow_name": self.workflow_name,
            "pending": self.pending,
            "oldest": self.oldest.isoformat() if self.oldest else None,
        }


@attrs.frozen(kw_only=True)
class ConsumerLag:
    """How far one consumer of a PostgreSQL event stream is behind on one topic.

    Attributes:
        topic: The topic (``orders-2``: workflow ``orders``, status 2).
        consumer: The receiver name (a process of a workflow).
        workflow_name: The workflow the topic belongs to, when the topic name tells.
        status_name: The status whose events the topic carries, when the topic name tells.
        waiting: Events after the consumer's position, not yet handed out (counted up to
            a cap; ``waiting_capped`` says the count stopped there).
        waiting_capped: Whether there are more than ``waiting`` events waiting.
        claimed: Events handed out to the consumer and not acknowledged yet.
        oldest_unacked: When the oldest event not yet acknowledged was stored (None when
            the consumer is caught up).

    """

    topic: str
    consumer: str
    workflow_name: str
    status_name: str
    waiting: int
    waiting_capped: bool
    claimed: int
    oldest_unacked: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The lag as JSON data."""
        return {
            "topic": self.topic,
            "consumer": self.consumer,
            "workflow_name": self.workflow_name,
            "status": self.status_name,
            "waiting": self.waiting,
            "waiting_capped": self.waiting_capped,
            "claimed": self.claimed,
            "oldest_unacked": self.oldest_unacked.isoformat() if self.oldest_unacked else None,
        }


@attrs.frozen(kw_only=True)
class LagView:
    """The consumer lag a store can tell; ``available`` is False when it cannot."""

    available: bool
    consumers: list[ConsumerLag]
    note: str = ""


@attrs.frozen(kw_only=True)
class WorkflowSummary:
    """A workflow seen in the store, or loaded from the application, or both."""

    name: str
    runs: int
    loaded: bool
    statuses: list[str]

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON data."""
        return {
            "name": self.name,
            "runs": self.runs,
            "loaded": self.loaded,
            "statuses": self.statuses,
        }


@attrs.frozen(kw_only=True)
class HistoryItem:
    """One write of a run, from its history (or, without history, as observed)."""

    version: int
    status: int
    status_name: str
    run_state: RunState
    reason: str
    actor: str
    at: datetime
    error: str = ""
    trace_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON data."""
        return {
            "version": self.version,
            "status": self.status_name,
            "status_value": self.status,
            "run_state": run_state_name(self.run_state),
            "reason": self.reason,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "error": self.error,
            "trace_id": self.trace_id,
        }


@attrs.frozen(kw_only=True)
class HistoryView:
    """A run's history, oldest first; ``available`` is False when the store keeps none."""

    available: bool
    items: list[HistoryItem]
    note: str = ""


@attrs.frozen(kw_only=True)
class Inspection:
    """What an operator wants to know about one run beyond its record.

    Attributes:
        verbs: The actions its run state allows.
        next_statuses: The statuses its current one leads to (from the loaded workflow).
        timeouts: Its pending timeouts, as ``(status name, expire at)``.
        outbox_pending: Whether an event of one of its writes is not published yet
            (``None`` when unknown).
        report: The workflow's own inspection report, when it offers one.

    """

    verbs: list[Verb]
    next_statuses: list[str]
    timeouts: list[tuple[str, datetime]]
    outbox_pending: bool | None
    report: str = ""


@attrs.frozen(kw_only=True)
class RunDetail:
    """One run: its row, object and what is known about it.

    Attributes:
        row: The record's fields.
        object_json: The object as JSON data, if it is JSON (the default codec's form).
        object_bytes: The stored object, as stored.
        object_type: The object's class name, when the workflow is loaded.
        object_repr: ``repr()`` of the decoded object, when the workflow is loaded.
        decode_error: Why the object could not be decoded, if it could not.
        meta: The record's meta fields.

    """

    row: RunRow
    object_json: Any
    object_bytes: bytes
    object_type: str = ""
    object_repr: str = ""
    decode_error: str = ""
    meta: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The run as JSON data: the row's fields, the object and the meta."""
        data = self.row.to_json()
        data["object"] = self.object_json
        if self.object_json is None and self.object_bytes:
            data["object_base64"] = base64.b64encode(self.object_bytes).decode()
        data["object_type"] = self.object_type
        data["meta"] = dict(self.meta)
        if self.decode_error:
            data["decode_error"] = self.decode_error
        return data


@attrs.frozen(kw_only=True)
class ActionResult:
    """The outcome of an action on one run: the new record's fields."""

    verb: Verb
    row: RunRow
    actor: str

    def to_json(self) -> dict[str, Any]:
        """The outcome as JSON data."""
        return {"action": self.verb.value, "actor": self.actor, **self.row.to_json()}


@attrs.frozen(kw_only=True)
class BulkPreview:
    """What a bulk action would touch: runs matching, and those it applies to."""

    verb: Verb
    matched: int
    eligible: int

    def to_json(self) -> dict[str, Any]:
        """The preview as JSON data."""
        return {
            "action": self.verb.value,
            "dry_run": True,
            "matched": self.matched,
            "eligible": self.eligible,
        }


@attrs.frozen(kw_only=True)
class BulkResult:
    """The outcome of a bulk action: runs moved, and each refusal by run id."""

    verb: Verb
    done: list[str]
    failed: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The outcome as JSON data."""
        return {
            "action": self.verb.value,
            "dry_run": False,
            "done": len(self.done),
            "failed": self.failed,
        }
