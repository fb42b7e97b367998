"""luno_wf: a typed, asyncio, event-driven workflow framework.

A workflow is a state machine over an ``IntEnum`` of statuses; each run carries a typed
object from status to status. Every move is one durable write of the run's record together
with an outbox event, and events drive the next move.
"""

from __future__ import annotations

from ._api import API as API
from ._builder import Builder as Builder
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._converter import default_converter as default_converter
from ._deadletter import DeadLetter as DeadLetter
from ._deadletter import replay_dead_letter as replay_dead_letter
from ._event import ConnectorEvent as ConnectorEvent
from ._event import Event as Event
from ._event import Header as Header
from ._event import OutboxEvent as OutboxEvent
from ._filter import FilterKind as FilterKind
from ._filter import OrderType as OrderType
from ._filter import RecordFilter as RecordFilter
from ._filter import filter_by_created_at_after as filter_by_created_at_after
from ._filter import filter_by_created_at_before as filter_by_created_at_before
from ._filter import filter_by_foreign_id as filter_by_foreign_id
from ._filter import filter_by_run_state as filter_by_run_state
from ._filter import filter_by_status as filter_by_status
from ._filter import matches_filters as matches_filters
from ._history import HistoryEntry as HistoryEntry
from ._ids import MAX_FOREIGN_ID_LENGTH as MAX_FOREIGN_ID_LENGTH
from ._ids import check_foreign_id as check_foreign_id
from ._inspect import Inspection as Inspection
from ._naming import delete_topic as delete_topic
from ._naming import make_role as make_role
from ._naming import run_state_change_topic as run_state_change_topic
from ._naming import topic as topic
from ._options import ExponentialBackoff as ExponentialBackoff
from ._options import Options as Options
from ._outbox import OutboxData as OutboxData
from ._outbox import decode_outbox_data as decode_outbox_data
from ._outbox import encode_outbox_data as encode_outbox_data
from ._outbox import make_outbox_event as make_outbox_event
from ._outbox import outbox_data as outbox_data
from ._processstate import ProcessState as ProcessState
from ._record import Meta as Meta
from ._record import Record as Record
from ._retention import prune_history_periodically as prune_history_periodically
from ._run import Run as Run
from ._run import TypedRecord as TypedRecord
from ._runstate import RunState as RunState
from ._timeoutrecord import TimeoutRecord as TimeoutRecord
from ._timers import duration_timer as duration_timer
from ._timers import time_timer as time_timer
from ._tracing import Tracing as Tracing
from ._transition import Transition as Transition
from ._workflow import Workflow as Workflow
from .adapter import Ack as Ack
from .adapter import BatchLookup as BatchLookup
from .adapter import BatchOutboxDeleter as BatchOutboxDeleter
from .adapter import BatchReceiver as BatchReceiver
from .adapter import BatchSender as BatchSender
from .adapter import BatchStore as BatchStore
from .adapter import ConnectorConstructor as ConnectorConstructor
from .adapter import ConnectorConsumer as ConnectorConsumer
from .adapter import DeadLetterStore as DeadLetterStore
from .adapter import DirectEvents as DirectEvents
from .adapter import EventReceiver as EventReceiver
from .adapter import EventSender as EventSender
from .adapter import EventStreamer as EventStreamer
from .adapter import HistoryStore as HistoryStore
from .adapter import OutboxDataLister as OutboxDataLister
from .adapter import RecordStore as RecordStore
from .adapter import RoleScheduler as RoleScheduler
from .adapter import ShardedStreamer as ShardedStreamer
from .adapter import TimeoutStore as TimeoutStore

__all__ = [
    "Ack",
    "API",
    "BatchLookup",
    "BatchOutboxDeleter",
    "BatchReceiver",
    "BatchSender",
    "BatchStore",
    "Builder",
    "check_foreign_id",
    "Clock",
    "ConnectorConstructor",
    "ConnectorConsumer",
    "ConnectorEvent",
    "DeadLetter",
    "DeadLetterStore",
    "decode_outbox_data",
    "default_converter",
    "delete_topic",
    "DirectEvents",
    "duration_timer",
    "encode_outbox_data",
    "Event",
    "EventReceiver",
    "EventSender",
    "EventStreamer",
    "ExponentialBackoff",
    "filter_by_created_at_after",
    "filter_by_created_at_before",
    "filter_by_foreign_id",
    "filter_by_run_state",
    "filter_by_status",
    "FilterKind",
    "Header",
    "HistoryEntry",
    "HistoryStore",
    "Inspection",
    "make_outbox_event",
    "make_role",
    "matches_filters",
    "MAX_FOREIGN_ID_LENGTH",
    "Meta",
    "Options",
    "OrderType",
    "outbox_data",
    "OutboxData",
    "OutboxDataLister",
    "OutboxEvent",
    "ProcessState",
    "prune_history_periodically",
    "Record",
    "RecordFilter",
    "RecordStore",
    "replay_dead_letter",
    "RoleScheduler",
    "Run",
    "run_state_change_topic",
    "RunState",
    "ShardedStreamer",
    "SystemClock",
    "time_timer",
    "TimeoutRecord",
    "TimeoutStore",
    "topic",
    "Tracing",
    "Transition",
    "TypedRecord",
    "Workflow",
]
