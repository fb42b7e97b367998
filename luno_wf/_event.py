"""Events that move runs: :class:`Event`, :class:`OutboxEvent`, :class:`ConnectorEvent`."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

__all__ = ["ConnectorEvent", "Event", "Header", "OutboxEvent"]


class Header(enum.StrEnum):
    """Event header names, luno/workflow's so Go and Python services interoperate.

    ``traceparent`` and ``tracestate`` (W3C trace context) are added to events of runs
    triggered in a trace; luno's readers ignore them.
    """

    WORKFLOW_NAME = "workflow_name"
    FOREIGN_ID = "foreign_id"
    TOPIC = "topic"
    RUN_ID = "run_id"
    RUN_STATE = "run_state"
    RECORD_VERSION = "record_version"
    CONNECTOR_DATA = "connector_data"
    MALFORMED = "luno_wf_malformed_headers"
    """Set by a streamer on an event whose stored headers are not a JSON object of strings
    (the original text is its value); consumers set such an event aside."""
    # W3C trace context (not luno's): the trace the run was triggered in, on every event.
    TRACEPARENT = "traceparent"
    TRACESTATE = "tracestate"


@attrs.frozen(kw_only=True)
class Event:
    """An event as an :class:`~luno_wf.adapter.EventReceiver` yields it.

    Attributes:
        id: Assigned by the streamer, identical for every receiver of the same event, used
            for sharding.
        foreign_id: The key the sender passed; for engine events this is the run id.
        type: The status the event announces.
        headers: The headers as sent (see :class:`Header`).
        created_at: When the event was published.

    """

    id: int
    foreign_id: str
    type: int
    headers: dict[str, str]
    created_at: datetime


@attrs.frozen(kw_only=True)
class OutboxEvent:
    """A row of the transactional outbox, written in the same transaction as its record.

    ``data`` is luno's ``OutboxRecord`` protobuf message (see :func:`luno_wf.decode_outbox_data`).
    """

    id: str
    workflow_name: str
    data: bytes
    created_at: datetime


@attrs.frozen(kw_only=True)
class ConnectorEvent:
    """An event from an external source, handed to a connector function."""

    id: str
    foreign_id: str
    type: str
    headers: dict[str, str] = attrs.field(factory=dict)
    created_at: datetime
