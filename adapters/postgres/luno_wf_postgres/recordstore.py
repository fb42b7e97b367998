"""PostgresRecordStore: runs and their transactional outbox in PostgreSQL."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import errors, sql

from luno_wf import (
    Clock,
    Event,
    EventStreamer,
    FilterKind,
    HistoryEntry,
    Meta,
    OrderType,
    OutboxEvent,
    Record,
    RecordFilter,
    RunState,
    SystemClock,
    check_foreign_id,
    make_outbox_event,
    outbox_data,
)
from luno_wf import topic as status_topic
from luno_wf._filter import fold_filters
from luno_wf.errors import CorruptRecord, RecordNotFound, StaleRecord, WorkflowInProgress

from ._deadletters import DEAD_LETTER_TEMPLATES, DeadLetters
from ._pool import AutocommitConnections, PoolAdapter, PoolOrDsn, stop_task
from ._schema import DEFAULT_SCHEMA, Statements
from .streamer import PostgresStreamer

__all__ = ["PostgresRecordStore"]

_COLUMNS = (
    "run_id, workflow_name, foreign_id, run_state, status, object, created_at, updated_at, "
    "version, meta::text"  # JSON text, decoded by orjson: cheaper than psycopg's jsonb loader
)

# Writes. Each is one statement: the record's write (`w`: the insert or the compare-and-set
# update, returning the run id if it happened), the history entry of that write, and then
# either its outbox row or, for a workflow whose events this store writes itself (see
# publishes_events), the event, appended as the streamer's send_events appends it: under
# the topic's transaction-scoped advisory lock (taken after the record's row lock, topics
# in sorted order, so two writes cannot deadlock on them). Receivers are woken after the
# commit by the streamer (in this process at once, in others by a NOTIFY of its own).
_INSERT_ONE = """
WITH w AS (
    INSERT INTO {s}.records (run_id, workflow_name, foreign_id, run_state, status, object,
                             created_at, updated_at, version, meta)
    VALUES (%(run_id)s, %(workflow_name)s, %(foreign_id)s, %(run_state)s, %(status)s,
            %(object)s, %(created_at)s, %(updated_at)s, %(version)s, %(meta)s::jsonb)
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id
), hist AS (
    INSERT INTO {s}.history (run_id, version, workflow_name, foreign_id, status, run_state,
                             reason, actor, at, error, trace_id, object)
    SELECT %(run_id)s, %(version)s, %(workflow_name)s, %(foreign_id)s, %(status)s,
           %(run_state)s, %(reason)s, %(actor)s, %(updated_at)s, %(error)s, %(trace_id)s,
           CASE WHEN %(keep_object)s THEN %(object)s END
    FROM w WHERE %(history)s
)"""
_UPDATE_ONE = """
WITH w AS (
    UPDATE {s}.records SET
        workflow_name = %(workflow_name)s, foreign_id = %(foreign_id)s,
        run_state = %(run_state)s, status = %(status)s, object = %(object)s,
        created_at = %(created_at)s, updated_at = %(updated_at)s,
        version = %(version)s, meta = %(meta)s::jsonb
    WHERE run_id = %(run_id)s AND version = %(prev_version)s
    RETURNING run_id
), hist AS (
    INSERT INTO {s}.history (run_id, version, workflow_name, foreign_id, status, run_state,
                             reason, actor, at, error, trace_id, object)
    SELECT %(run_id)s, %(version)s, %(workflow_name)s, %(foreign_id)s, %(status)s,
           %(run_state)s, %(reason)s, %(actor)s, %(updated_at)s, %(error)s, %(trace_id)s,
           CASE WHEN %(keep_object)s THEN %(object)s END
    FROM w WHERE %(history)s
), scrub AS (
    UPDATE {s}.history h SET object = NULL, reason = '', error = ''
    FROM w
    WHERE %(scrub)s AND h.run_id = %(run_id)s
      AND (h.object IS NOT NULL OR h.reason <> '' OR h.error <> '')
)"""
_OUTBOX_ONE = """, out AS (
    INSERT INTO {s}.outbox (id, workflow_name, data, created_at)
    SELECT %(outbox_id)s, %(workflow_name)s, %(data)s, %(outbox_created_at)s FROM w
)
SELECT count(*) FROM w"""
_APPEND_ONE = """, ev AS (
    INSERT INTO {s}.events (topic, foreign_id, type, headers, created_at)
    SELECT %(topic)s::text, %(run_id)s::text, %(status)s::bigint, %(headers)s::jsonb,
           %(event_created_at)s::timestamptz
    FROM (
        SELECT pg_advisory_xact_lock(hashtextextended({lock_prefix} || %(topic)s::text, 0))
        FROM (SELECT FROM w OFFSET 0) AS written
    ) AS locked
    RETURNING id
)"""
_EVENT_ONE = (
    _APPEND_ONE
    + """
SELECT count(*) FROM w"""
)
# The same, handing the event straight to receivers of this process that wait for its
# topic (see the schema's hand_off): returns also the event's id and the names of those
# it was handed to.
_HANDOFF_ONE = (
    _APPEND_ONE
    + """, handed AS (
    SELECT id, {s}.hand_off(%(topic)s::text, %(handoff_names)s::@names@,
                            %(handoff_owners)s::@names@, %(handoff_lease)s::interval, id) AS yes
    FROM ev
)
SELECT (SELECT count(*) FROM w), (SELECT id FROM handed), (SELECT yes FROM handed)"""
)
# Many runs: the arrays of their columns, and each one's write (a compare-and-set update,
# or an insert that does nothing for a run id already stored), then the history entries
# and outbox rows (or events) of those written, in the order given. Runs not written
# (stale, not stored yet, or already stored) are returned by none.
_MANY_INPUT = """
WITH input AS (
    SELECT * FROM unnest(
        %(run_id)b::text[], %(workflow_name)b::text[], %(foreign_id)b::text[],
        %(run_state)b::integer[], %(status)b::bigint[], %(object)b::bytea[],
        %(created_at)b::timestamptz[], %(updated_at)b::timestamptz[], %(version)b::bigint[],
        %(meta)b::text[], %(history)b::boolean[], %(keep_object)b::boolean[],
        %(scrub)b::boolean[], %(reason)b::text[], %(actor)b::text[], %(error)b::text[],
        %(trace_id)b::text[], @arrays@
    ) WITH ORDINALITY AS i(run_id, workflow_name, foreign_id, run_state, status, object,
                           created_at, updated_at, version, meta, history, keep_object,
                           scrub, reason, actor, error, trace_id, @columns@, ord)
)"""
_MANY_UPDATE = """, w AS (
    UPDATE {s}.records r SET
        workflow_name = i.workflow_name, foreign_id = i.foreign_id,
        run_state = i.run_state, status = i.status, object = i.object,
        created_at = i.created_at, updated_at = i.updated_at,
        version = i.version, meta = i.meta::jsonb
    FROM input i
    WHERE r.run_id = i.run_id AND r.version = i.version - 1
    RETURNING r.run_id
), scrub AS (
    UPDATE {s}.history h SET object = NULL, reason = '', error = ''
    FROM input i JOIN w USING (run_id)
    WHERE i.scrub AND h.run_id = i.run_id
      AND (h.object IS NOT NULL OR h.reason <> '' OR h.error <> '')
)"""
_MANY_INSERT = """, w AS (
    INSERT INTO {s}.records (run_id, workflow_name, foreign_id, run_state, status, object,
                             created_at, updated_at, version, meta)
    SELECT i.run_id, i.workflow_name, i.foreign_id, i.run_state, i.status, i.object,
           i.created_at, i.updated_at, i.version, i.meta::jsonb
    FROM input i ORDER BY i.ord
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id
)"""
_MANY_HISTORY = """, hist AS (
    INSERT INTO {s}.history (run_id, version, workflow_name, foreign_id, status, run_state,
                             reason, actor, at, error, trace_id, object)
    SELECT i.run_id, i.version, i.workflow_name, i.foreign_id, i.status, i.run_state,
           i.reason, i.actor, i.updated_at, i.error, i.trace_id,
           CASE WHEN i.keep_object THEN i.object END
    FROM input i JOIN w USING (run_id)
    WHERE i.history
)"""
_OUTBOX_MANY = """, out AS (
    INSERT INTO {s}.outbox (id, workflow_name, data, created_at)
    SELECT i.outbox_id, i.workflow_name, i.data, %(outbox_created_at)s
    FROM input i JOIN w USING (run_id)
    ORDER BY i.ord
)
SELECT run_id FROM w"""
# Every record row is locked (the sort reads all of `w`) before the first topic lock.
_EVENT_MANY = """, ev AS (
    INSERT INTO {s}.events (topic, foreign_id, type, headers, created_at)
    SELECT e.topic, e.run_id, e.status, e.headers::jsonb, %(event_created_at)s::timestamptz
    FROM (
        SELECT o.topic, o.run_id, o.status, o.headers,
               pg_advisory_xact_lock(hashtextextended({lock_prefix} || o.topic, 0)) AS locked
        FROM (SELECT i.topic, i.run_id, i.status, i.headers FROM input i JOIN w USING (run_id)
              ORDER BY i.topic, i.ord OFFSET 0) AS o
    ) AS e
    RETURNING 1
)
SELECT run_id FROM w"""
_OUTBOX_ARRAYS = ("%(outbox_id)b::text[], %(data)b::bytea[]", "outbox_id, data")
_EVENT_ARRAYS = ("%(topic)b::text[], %(headers)b::text[]", "topic, headers")


def _many(write: str, publish: str, arrays: tuple[str, str]) -> str:
    columns = _MANY_INPUT.replace("@arrays@", arrays[0]).replace("@columns@", arrays[1])
    return columns + write + _MANY_HISTORY + publish


_TEMPLATES = {
    # A new run. A run id already stored inserts nothing (count 0) and the caller tries
    # the versioned update instead.
    "insert": _INSERT_ONE + _OUTBOX_ONE,
    "insert_event": _INSERT_ONE + _EVENT_ONE,
    # An existing run: compare-and-set on the version; the rest only if it won.
    "update": _UPDATE_ONE + _OUTBOX_ONE,
    "update_event": _UPDATE_ONE + _EVENT_ONE,
    # To one receiver (text parameters; returns whether) or to several (arrays; returns
    # the names it was handed to).
    "insert_handoff": _INSERT_ONE + _HANDOFF_ONE.replace("@names@", "text"),
    "update_handoff": _UPDATE_ONE + _HANDOFF_ONE.replace("@names@", "text"),
    "insert_handoffs": _INSERT_ONE + _HANDOFF_ONE.replace("@names@", "text[]"),
    "update_handoffs": _UPDATE_ONE + _HANDOFF_ONE.replace("@names@", "text[]"),
    "update_many": _many(_MANY_UPDATE, _OUTBOX_MANY, _OUTBOX_ARRAYS),
    "update_many_event": _many(_MANY_UPDATE, _EVENT_MANY, _EVENT_ARRAYS),
    "insert_many_event": _many(_MANY_INSERT, _EVENT_MANY, _EVENT_ARRAYS),
    "version": "SELECT version FROM {s}.records WHERE run_id = %s",
    # The run's entries by version; one row of NULLs if it has none, no row if no such run.
    "history": """
SELECT h.workflow_name, h.foreign_id, h.version, h.status, h.run_state, h.reason, h.actor,
       h.at, h.error, h.trace_id, h.object
FROM {s}.records r LEFT JOIN {s}.history h ON h.run_id = r.run_id
WHERE r.run_id = %s
ORDER BY h.version""",
    # One batch of pruning: the next `limit` entries older than `before` in (at, run_id,
    # version) order after the cursor, of which those that are not their run's newest are
    # deleted. Returns how many were looked at and deleted, and the last one (the cursor).
    # Only the entries to delete are locked, and those a write holds (a data deletion's
    # scrub) are skipped, not waited for: pruning never waits on a write, so it can never
    # deadlock with one.
    "prune": """
WITH batch AS (
    SELECT h.run_id, h.version, h.at FROM {s}.history h
    WHERE h.at < %(before)s AND h.at >= %(after_at)s
      AND (h.at, h.run_id, h.version) > (%(after_at)s, %(after_run_id)s, %(after_version)s)
      AND (%(workflow_name)s::text IS NULL OR h.workflow_name = %(workflow_name)s::text)
    ORDER BY h.at, h.run_id, h.version
    LIMIT %(limit)s
), doomed AS (
    SELECT d.run_id, d.version FROM {s}.history d JOIN batch b USING (run_id, version)
    WHERE EXISTS (SELECT 1 FROM {s}.history n WHERE n.run_id = b.run_id AND n.version > b.version)
    FOR UPDATE OF d SKIP LOCKED
), gone AS (
    DELETE FROM {s}.history d USING doomed
    WHERE d.run_id = doomed.run_id AND d.version = doomed.version
    RETURNING 1
), last AS (
    SELECT at, run_id, version FROM batch ORDER BY at DESC, run_id DESC, version DESC LIMIT 1
)
SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM gone), last.at, last.run_id,
       last.version
FROM (SELECT) AS one LEFT JOIN last ON true""",
    "holder": """
SELECT run_id FROM {s}.records
WHERE workflow_name = %s AND foreign_id = %s AND run_state NOT IN (4, 5, 6, 7)""",
    "lookup": f"SELECT {_COLUMNS} FROM {{s}}.records WHERE run_id = %s",
    "lookup_many": f"SELECT {_COLUMNS} FROM {{s}}.records WHERE run_id = ANY(%b::text[])",
    "latest": f"""
SELECT {_COLUMNS} FROM {{s}}.records WHERE workflow_name = %s AND foreign_id = %s
ORDER BY created_at DESC, seq DESC LIMIT 1""",
    "list_outbox": """
SELECT id, workflow_name, data, created_at FROM {s}.outbox
WHERE workflow_name = %s ORDER BY seq LIMIT %s""",
    # The same, first removing rows whose deletion was deferred (see delete_outbox_events);
    # the SELECT's snapshot predates the DELETE, hence the filter. Published rows lost by
    # a crash are published again (at least once), so the commit need not wait for the
    # WAL flush.
    "list_outbox_deleting": """
WITH async AS (
    SELECT set_config('synchronous_commit', 'off', true) AS setting
), gone AS (
    DELETE FROM {s}.outbox
    WHERE id = ANY(%(deleted)b::text[]) AND (SELECT setting FROM async) IS NOT NULL
)
SELECT id, workflow_name, data, created_at FROM {s}.outbox
WHERE workflow_name = %(workflow_name)s AND id <> ALL(%(deleted)b::text[])
ORDER BY seq LIMIT %(limit)s""",
    "delete_outbox": "DELETE FROM {s}.outbox WHERE id = %s",
    "delete_outbox_many": """
WITH async AS (SELECT set_config('synchronous_commit', 'off', true) AS setting)
DELETE FROM {s}.outbox WHERE id = ANY(%b::text[]) AND (SELECT setting FROM async) IS NOT NULL""",
}

_UNFINISHED_INDEX = "records_one_unfinished"
_OUTBOX_WRITES = ("insert", "update")
_EVENT_WRITES = ("insert_event", "update_event")
_HANDOFF_WRITES = ("insert_handoff", "update_handoff")
_HANDOFFS_WRITES = ("insert_handoffs", "update_handoffs")
_HANDOFF_PREFIX = "handoff_"  # the parameters of _HANDOFF_ONE's receiver
_HISTORY = (True, False)  # history on, without object snapshots, unless configured
_BEFORE_ALL = datetime(1, 1, 1, tzinfo=UTC)  # the prune cursor's start
_MAX_STORE_ATTEMPTS = 3  # insert and update can race with a concurrent insert once each
_MAX_DEFERRED_DELETES = 10_000
_MAX_CLAIMED = 10_000  # records of claimed events kept for lookup_many
_VERSION = 8  # the version's place in a row of _COLUMNS


_Claimed = tuple[Any, ...] | Record
"""A claimed event's record: its row as a claim read it, or as a write handed it over."""


def _version(claimed: _Claimed) -> int:
    return claimed.meta.version if isinstance(claimed, Record) else int(claimed[_VERSION])


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(UTC)


def _meta_json(meta: Meta) -> str:
    # luno's sqlstore keys, so Go services read the same rows.
    return orjson.dumps(
        {
            "RunStateReason": meta.run_state_reason,
            "StatusDescription": meta.status_description,
            "Version": meta.version,
            "TraceOrigin": meta.trace_origin,
            "Actor": meta.actor,
            "Error": meta.error,
            "TraceID": meta.trace_id,
            "TraceParent": meta.traceparent,
            "TraceState": meta.tracestate,
        }
    ).decode()


def _meta_from(text: str | None, version: int) -> Meta:
    # Rows written before a key existed lack it: its default.
    value: Mapping[str, Any] = (orjson.loads(text) if text else None) or {}
    if not isinstance(value, Mapping):
        raise TypeError(f"meta is not a JSON object but {type(value).__name__}")
    return Meta(
        run_state_reason=str(value.get("RunStateReason") or ""),
        status_description=str(value.get("StatusDescription") or ""),
        version=version,
        trace_origin=str(value.get("TraceOrigin") or ""),
        actor=str(value.get("Actor") or ""),
        error=str(value.get("Error") or ""),
        trace_id=str(value.get("TraceID") or ""),
        traceparent=str(value.get("TraceParent") or ""),
        tracestate=str(value.get("TraceState") or ""),
    )


def _write_params(record: Record, history: tuple[bool, bool], events: bool) -> dict[str, object]:
    """The columns of a record's row, its history entry, and its event or outbox row.

    ``history`` is the workflow's ``(enabled, objects)`` setting. A data deletion writes
    its entry scrubbed, and scrubs the run's earlier entries. With ``events`` the record's
    event (topic and headers: its foreign id and type are the run id and status), else
    its outbox row.
    """
    meta = record.meta
    enabled, objects = history
    scrub = record.run_state == RunState.DATA_DELETED
    params: dict[str, object] = {
        "run_id": record.run_id,
        "workflow_name": record.workflow_name,
        "foreign_id": record.foreign_id,
        "run_state": int(record.run_state),
        "status": int(record.status),
        "object": record.object,
        "created_at": _utc(record.created_at, "record.created_at"),
        "updated_at": _utc(record.updated_at, "record.updated_at"),
        "version": meta.version,
        "meta": _meta_json(meta),
        "history": enabled,
        "keep_object": objects and not scrub,
        "scrub": scrub,
        "reason": "" if scrub else meta.run_state_reason,
        "actor": meta.actor,
        "error": "" if scrub else meta.error,
        "trace_id": meta.trace_id,
    }
    if events:
        headers = outbox_data(record).headers
        params["topic"] = headers["topic"]
        params["headers"] = orjson.dumps(headers).decode()
    else:
        params["outbox_id"], params["data"] = make_outbox_event(record)
    return params


def _record(row: Sequence[Any]) -> Record:
    """The record of a row; :class:`CorruptRecord` naming the run if the row is not one."""
    run_id, workflow_name, foreign_id, run_state, status, obj, created, updated, version, meta = row
    try:
        return Record(
            workflow_name=workflow_name,
            foreign_id=foreign_id,
            run_id=run_id,
            run_state=RunState(run_state),
            status=int(status),
            object=bytes(obj),
            created_at=created.astimezone(UTC),
            updated_at=updated.astimezone(UTC),
            meta=_meta_from(meta, int(version)),
        )
    except (ValueError, TypeError, AttributeError) as err:
        # Rows luno_wf never writes (a manual fix, another service): say what is wrong.
        raise CorruptRecord(
            f"the stored row of run {run_id!r} cannot be read: {type(err).__name__}: {err} "
            f"(run_state={run_state!r}, meta={str(meta)[:200]!r})",
            workflow_name=workflow_name,
            run_id=run_id,
        ) from None


def _readable(rows: Sequence[Sequence[Any]]) -> dict[str, Record]:
    """The records of ``rows`` by run id, leaving out rows that cannot be read."""
    out: dict[str, Record] = {}
    for row in rows:
        try:
            record = _record(row)
        except CorruptRecord:
            continue  # lookup() of that run raises, so its one event is set aside alone
        out[record.run_id] = record
    return out


class PostgresRecordStore(DeadLetters, PoolAdapter):
    """A :class:`~luno_wf.adapter.RecordStore` on PostgreSQL, with a transactional outbox.

    Every :meth:`store` is one statement (one round trip): the record's insert or
    versioned update, its outbox row and its history entry, committed together. For a
    workflow whose streamer is a :class:`~luno_wf_postgres.PostgresStreamer` on the same
    database and schema, the statement appends the event itself instead of an outbox row
    (:meth:`publishes_events`, a :class:`~luno_wf.adapter.DirectEvents`).
    Timestamps are the record's own (microsecond precision), never the database clock.
    It is a :class:`~luno_wf.adapter.HistoryStore`: history is on for every workflow,
    without object snapshots, unless :meth:`configure_history` says otherwise.

    Args:
        pool: An open :class:`psycopg_pool.AsyncConnectionPool` (yours: the store never
            closes it), or a DSN from which the store opens its own pool at its first call
            and closes it in :meth:`close`. The store borrows a connection per call and
            runs each call in autocommit mode (each is a single atomic statement), keeping
            the connection a moment for its next calls.
        schema: The schema :func:`~luno_wf_postgres.migrate` created.
        clock: Stamps outbox rows' ``created_at`` (defaults to the wall clock).
        pool_kwargs: With a DSN, keyword arguments for the store's own
            :class:`~psycopg_pool.AsyncConnectionPool` (default ``min_size=1, max_size=10``).
        direct_events: Write the events of a workflow whose streamer is a
            :class:`~luno_wf_postgres.PostgresStreamer` on the same database and schema
            straight to its event table, in the record's statement, rather than an outbox
            row (see :meth:`publishes_events`). On by default; False keeps the outbox for
            every workflow.

    """

    def __init__(
        self,
        pool: PoolOrDsn,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
        direct_events: bool = True,
    ) -> None:
        self._conns = AutocommitConnections(
            pool, owner="PostgresRecordStore", pool_kwargs=pool_kwargs, schema=schema
        )
        self._schema = schema
        self._clock = clock or SystemClock()
        self._sql = Statements(schema, {**_TEMPLATES, **DEAD_LETTER_TEMPLATES})
        self._deferred: builtins.list[str] = []  # published rows not yet deleted
        self._history_settings: dict[str, tuple[bool, bool]] = {}  # (enabled, objects)
        self._direct_events = direct_events
        # The workflows whose events this store writes itself, and to which streamer.
        self._direct: dict[str, PostgresStreamer] = {}
        self._inserts = _Inserts(self)
        # The rows of the records of events receivers of the streamer of such a workflow
        # claimed, by run id, the newest version of each (see lookup_many).
        self._claimed: dict[str, _Claimed] = {}

    def publishes_events(self, workflow_name: str, streamer: EventStreamer) -> bool:
        """Whether this store writes the events of ``workflow_name``'s records itself.

        The engine asks once per workflow, when it is built. The answer is True, and from
        then on every write of the workflow's records appends its event to ``streamer``'s
        table in the same statement (no outbox row), when ``direct_events`` is on and
        ``streamer`` is a :class:`~luno_wf_postgres.PostgresStreamer` with the same schema
        on the same database: the same pool, or pools (or DSNs) naming the same host,
        port and database. Otherwise the workflow's writes keep their outbox rows.
        """
        if (
            self._direct_events
            and isinstance(streamer, PostgresStreamer)
            and streamer._appendable_by(self._conns, self._schema)
        ):
            self._direct[workflow_name] = streamer
            streamer._add_record_sink(self)
            return True
        self._direct.pop(workflow_name, None)
        return False

    def configure_history(
        self, workflow_name: str, *, enabled: bool = True, objects: bool = False
    ) -> None:
        """Turn history, and object snapshots in it, on or off for the workflow's writes.

        The settings are this store object's, passed with each write; nothing is stored.
        """
        self._history_settings[workflow_name] = (enabled, objects)

    async def store(self, record: Record) -> None:
        """Insert or compare-and-set update ``record``, with its history entry and its event.

        The event goes in an outbox row, or straight to the workflow's streamer if this
        store writes its events (:meth:`publishes_events`); either way in the same
        statement, so it exists if and only if the write happened.

        Raises:
            StaleRecord: The run exists with a version other than ``meta.version - 1``.
            WorkflowInProgress: The write would leave two unfinished runs of the foreign id.
            ValueError: A timestamp of the record is naive.
            InvalidForeignID: A new run's foreign id breaks the rule every store keeps.

        """
        if record.meta.version <= 1:
            check_foreign_id(record.foreign_id)  # the same rule as every store's
        streamer = self._direct.get(record.workflow_name)
        history = self._history_settings.get(record.workflow_name, _HISTORY)
        params = _write_params(record, history, streamer is not None)
        params["prev_version"] = record.meta.version - 1
        if streamer is None:
            params["outbox_created_at"] = self._clock.now()
            await self._write(record, params, _OUTBOX_WRITES)
        else:
            await self._store_event(record, params, streamer)

    async def _store_event(
        self, record: Record, params: dict[str, object], streamer: PostgresStreamer
    ) -> None:
        """Write ``record`` with its event, handed to a receiver of this process if one waits.

        Each receiver of the event's topic in this process with nothing left to hand out
        (of the event's shard, if it takes one) takes the event from the write itself
        (claimed in its statement, see the schema's ``hand_off``), with the record: it
        needs no claim of its own to start on it.
        """
        topic = str(params["topic"])
        params["event_created_at"] = created_at = streamer._clock.now()
        receivers = streamer._handoff_targets(topic)
        statements = _EVENT_WRITES
        if len(receivers) == 1:
            params["handoff_names"], params["handoff_owners"] = (
                receivers[0]._name,
                receivers[0]._owner,
            )
            statements = _HANDOFF_WRITES
        elif receivers:
            params["handoff_names"] = [receiver._name for receiver in receivers]
            params["handoff_owners"] = [receiver._owner for receiver in receivers]
            statements = _HANDOFFS_WRITES
        if receivers:
            params["handoff_lease"] = streamer._lease
        if record.meta.version <= 1:
            row = await self._inserts.write(record, params, statements)
        else:
            row = await self._write(record, params, statements)
        if receivers and row is not None and row[2]:
            event = Event(
                id=int(row[1]),
                foreign_id=record.run_id,
                type=int(record.status),
                headers=outbox_data(record).headers,  # what the statement stored
                created_at=created_at,
            )
            handed = (receivers[0]._name,) if row[2] is True else row[2]
            for receiver in receivers:
                if receiver._name in handed:
                    streamer._hand(receiver, event, record)
        if receivers and row is not None and row[1] is not None:
            streamer._passed_by(topic, int(row[1]))
        streamer._appended((topic,))

    async def _write(
        self, record: Record, params: dict[str, object], statements: tuple[str, str]
    ) -> tuple[Any, ...]:
        """Run the insert or update of ``statements``; the row of the one that wrote."""
        insert, update = statements
        # The engine inserts runs at version 1 and updates them above it: try that first.
        attempt = insert if record.meta.version <= 1 else update
        async with self._conns.connection() as conn:
            try:
                for _ in range(_MAX_STORE_ATTEMPTS):
                    cur = await self._conns.execute(conn, self._sql.get(attempt, conn), params)
                    row = await cur.fetchone()
                    if row is not None and row[0] == 1:
                        return tuple(row)
                    if attempt == insert:
                        attempt = update  # the run exists
                        continue
                    cur = await conn.execute(self._sql.get("version", conn), (record.run_id,))
                    found = await cur.fetchone()
                    if found is None:
                        attempt = insert  # the run does not exist (yet)
                        continue
                    raise StaleRecord(
                        f"expected stored version {record.meta.version - 1}, found {found[0]}",
                        workflow_name=record.workflow_name,
                        foreign_id=record.foreign_id,
                        run_id=record.run_id,
                    )
            except errors.UniqueViolation as err:
                if err.diag.constraint_name != _UNFINISHED_INDEX:
                    raise
                cur = await conn.execute(
                    self._sql.get("holder", conn), (record.workflow_name, record.foreign_id)
                )
                holder = await cur.fetchone()
                raise WorkflowInProgress(
                    workflow_name=record.workflow_name,
                    foreign_id=record.foreign_id,
                    run_id=holder[0] if holder else None,
                ) from None
        raise StaleRecord(
            "the run was concurrently inserted and removed; retry",
            workflow_name=record.workflow_name,
            foreign_id=record.foreign_id,
            run_id=record.run_id,
        )

    async def store_many(self, records: Sequence[Record]) -> builtins.list[Exception | None]:
        """Store the records as :meth:`store` would, one by one in order; the outcome of each.

        Each stretch of consecutive updates (``meta.version`` above 1) goes in one
        statement, each a compare-and-set with its outbox row, the rows in the order given.
        New runs, and updates that statement did not apply (stale, or not stored yet), go
        through :meth:`store` one by one, which names the reason; an update of a run not
        stored yet is thus inserted after the rest of its stretch. The statement is used
        only when no two records share a foreign id (of one workflow), so that the order
        within a stretch cannot change any outcome.

        Raises:
            ValueError: Two records have the same run id, or a timestamp is naive.

        """
        seen: set[str] = set()
        for record in records:
            if record.run_id in seen:
                raise ValueError(f"store_many got run {record.run_id!r} twice in one batch")
            seen.add(record.run_id)
        distinct = len({(r.workflow_name, r.foreign_id) for r in records}) == len(records)
        outcomes: builtins.list[Exception | None] = []
        i = 0
        while i < len(records):
            end = i
            while distinct and end < len(records) and records[end].meta.version > 1:
                end += 1
            if end - i > 1:
                stretch = list(records[i:end])
                applied = await self._update_many(stretch)
                for record in stretch:
                    outcomes.append(None if record.run_id in applied else await self._one(record))
                i = end
            else:
                outcomes.append(await self._one(records[i]))
                i += 1
        return outcomes

    async def _one(self, record: Record) -> Exception | None:
        try:
            await self.store(record)
        except (StaleRecord, WorkflowInProgress) as err:
            return err
        return None

    async def _update_many(self, records: builtins.list[Record]) -> set[str]:
        """The run ids of ``records`` updated (with their events or outbox rows).

        One statement, or one per streamer the records' events go to (or the outbox).
        """
        groups: dict[PostgresStreamer | None, builtins.list[Record]] = {}
        direct = self._direct
        for record in records:
            groups.setdefault(direct.get(record.workflow_name), []).append(record)
        applied: set[str] = set()
        for streamer, group in groups.items():
            applied |= await self._update_group(group, streamer)
        return applied

    async def _update_group(
        self, records: builtins.list[Record], streamer: PostgresStreamer | None
    ) -> set[str]:
        settings = self._history_settings
        events = streamer is not None
        each = [
            _write_params(record, settings.get(record.workflow_name, _HISTORY), events)
            for record in records
        ]
        # One array per column, for the statement's unnest.
        params: dict[str, object] = {name: [row[name] for row in each] for name in each[0]}
        if streamer is None:
            params["outbox_created_at"] = self._clock.now()
        else:
            params["event_created_at"] = streamer._clock.now()
        name = "update_many" if streamer is None else "update_many_event"
        async with self._conns.connection() as conn:
            try:
                cur = await self._conns.execute(conn, self._sql.get(name, conn), params)
            except errors.UniqueViolation as err:
                if err.diag.constraint_name != _UNFINISHED_INDEX:
                    raise
                return set()  # one of them conflicts: store() finds which, one by one
            updated = await cur.fetchall()
        applied = {row[0] for row in updated}
        if streamer is not None and applied:
            streamer._appended({str(p["topic"]) for p in each if p["run_id"] in applied})
        return applied

    async def close(self) -> None:
        """Give kept connections back to the pool (closing the pool if opened from a DSN).

        New runs still waiting to be written together fail with :class:`RuntimeError`.
        Calls after this raise :class:`RuntimeError`. Safe to call twice.
        """
        await self._inserts.close()
        await self._conns.close()

    async def _insert_together(self, batch: builtins.list[_Queued]) -> None:
        """Insert new runs whose events this store writes, in one statement if it can.

        Settles each entry's future with its outcome, as :meth:`store` would have had.
        """
        written: set[str] = set()
        if len(batch) > 1:
            params: dict[str, object] = {
                name: [entry[1][name] for entry in batch]
                for name in batch[0][1]
                if not name.startswith(_HANDOFF_PREFIX)  # one run's, not every run's
            }
            params["event_created_at"] = batch[0][1]["event_created_at"]
            try:
                async with self._conns.connection() as conn:
                    cur = await self._conns.execute(
                        conn, self._sql.get("insert_many_event", conn), params
                    )
                    written = {row[0] for row in await cur.fetchall()}
            except errors.UniqueViolation as err:
                if err.diag.constraint_name != _UNFINISHED_INDEX:
                    raise
                # A run already in progress: one by one, each learns whether it is that.
        for record, one, future in batch:
            if future.done():
                continue
            if record.run_id in written:
                future.set_result(None)
                continue
            try:
                await self._write(record, one, _EVENT_WRITES)
            except Exception as err:
                if not future.done():
                    future.set_exception(err)
            else:
                if not future.done():
                    future.set_result(None)

    async def history(self, run_id: str) -> builtins.list[HistoryEntry]:
        """The run's history entries, oldest first, in one query (on the primary key).

        Raises:
            RecordNotFound: No run has that id.

        """
        async with self._conns.connection() as conn:
            cur = await self._conns.execute(conn, self._sql.get("history", conn), (run_id,))
            rows = await cur.fetchall()
        if not rows:
            raise RecordNotFound(run_id=run_id)
        return [
            HistoryEntry(
                workflow_name=workflow_name,
                foreign_id=foreign_id,
                run_id=run_id,
                version=int(version),
                status=int(status),
                run_state=RunState(run_state),
                reason=reason,
                actor=actor,
                at=at.astimezone(UTC),
                error=error,
                trace_id=trace_id,
                object=None if obj is None else bytes(obj),
            )
            for (
                workflow_name,
                foreign_id,
                version,
                status,
                run_state,
                reason,
                actor,
                at,
                error,
                trace_id,
                obj,
            ) in rows
            if version is not None
        ]

    async def prune_history(
        self, before: datetime, *, workflow_name: str | None = None, batch_size: int = 1000
    ) -> int:
        """Delete entries with ``at < before``, but never a run's newest entry.

        Each batch is one statement of its own (a short transaction): it takes the next
        ``batch_size`` entries older than ``before`` in ``at`` order after where the last
        batch stopped, and deletes those that are not their run's newest. So every batch
        reads only its own entries, however many kept newest entries are older. Entries
        a concurrent write holds locked are skipped (a later prune takes them).

        Returns:
            How many entries were deleted.

        Raises:
            ValueError: ``batch_size`` is below 1, or ``before`` is naive.

        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        params: dict[str, object] = {
            "before": _utc(before, "before"),
            "workflow_name": workflow_name,
            "limit": batch_size,
            "after_at": _BEFORE_ALL,
            "after_run_id": "",
            "after_version": -1,
        }
        deleted = 0
        while True:
            async with self._conns.connection() as conn:
                cur = await self._conns.execute(conn, self._sql.get("prune", conn), params)
                row = await cur.fetchone()
            assert row is not None
            looked, gone, last_at, last_run_id, last_version = row
            deleted += int(gone)
            if looked < batch_size:
                return deleted
            params["after_at"] = last_at
            params["after_run_id"] = last_run_id
            params["after_version"] = last_version

    async def lookup(self, run_id: str) -> Record:
        """The record of ``run_id``.

        Raises:
            RecordNotFound: No run has that id.

        """
        async with self._conns.connection() as conn:
            cur = await self._conns.execute(conn, self._sql.get("lookup", conn), (run_id,))
            row = await cur.fetchone()
        if row is None:
            raise RecordNotFound(run_id=run_id)
        return _record(row)

    async def lookup_many(self, run_ids: Sequence[str]) -> dict[str, Record]:
        """The records of ``run_ids`` that exist, by run id, in one round trip (or none).

        A run whose event a receiver of a streamer this store writes events to has just
        claimed comes with that claim, read after the event (so at its version or newer)
        when the receiver took it: as fresh as a lookup made when the event arrived, which
        is when a consumer looks its batch up. Each such record is used once.
        """
        if not run_ids:
            return {}
        wanted = list(dict.fromkeys(run_ids))
        found: dict[str, Record] = {}
        if self._claimed:
            wanted = self._from_claims(wanted, found)
            if not wanted:
                return found
        async with self._conns.connection() as conn:
            cur = await self._conns.execute(conn, self._sql.get("lookup_many", conn), (wanted,))
            rows = await cur.fetchall()
        found.update(_readable(rows))
        return found

    def _from_claims(
        self, run_ids: builtins.list[str], found: dict[str, Record]
    ) -> builtins.list[str]:
        """Take the claimed records of ``run_ids`` into ``found``; the ids left to look up."""
        missing = []
        claimed = self._claimed
        for run_id in run_ids:
            row = claimed.pop(run_id, None)
            if row is None:
                missing.append(run_id)
            elif isinstance(row, Record):  # handed over by this store's write
                found[run_id] = row
            else:
                found.update(_readable([row]))  # an unreadable row is left out
        return missing

    def _wants_records(self, topic: str) -> bool:
        """Whether ``topic`` is a status topic (step consumers read it) of such a workflow."""
        status = topic.rpartition("-")[2]
        return status.isdigit() and any(
            topic == status_topic(name, int(status)) for name in self._direct
        )

    def _take_claimed(self, topic: str, rows: Mapping[str, _Claimed]) -> None:
        """The records of the events a receiver of ``topic`` claimed (see lookup_many).

        Rows as read with the claim, or records handed over with their event by a write.
        Each run keeps its newest version: whatever topic a record came with, it is at
        least as new as every event of the run claimed before it.
        """
        claimed = self._claimed
        if len(claimed) + len(rows) > _MAX_CLAIMED:
            claimed.clear()  # those no consumer took (another shard's): looked up if asked
        for run_id, row in rows.items():
            kept = claimed.get(run_id)
            if kept is None or _version(kept) <= _version(row):
                claimed[run_id] = row

    async def latest(self, workflow_name: str, foreign_id: str) -> Record:
        """The most recently created run of the foreign id (ties: the last inserted).

        Raises:
            RecordNotFound: The foreign id has no run in the workflow.

        """
        async with self._conns.connection() as conn:
            cur = await conn.execute(self._sql.get("latest", conn), (workflow_name, foreign_id))
            row = await cur.fetchone()
        if row is None:
            raise RecordNotFound(workflow_name=workflow_name, foreign_id=foreign_id)
        return _record(row)

    async def list(
        self,
        workflow_name: str,
        *,
        offset: int = 0,
        limit: int = 25,
        order: OrderType = OrderType.ASCENDING,
        filters: Sequence[RecordFilter] = (),
    ) -> builtins.list[Record]:
        """Matching records in first-stored order (newest first for DESCENDING), paginated.

        Pagination is by the insertion sequence, so pages are disjoint and stable even when
        many runs share a ``created_at``. ``limit`` 0 means 25.

        Raises:
            ValueError: ``offset`` or ``limit`` is negative.

        """
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, got {offset=} {limit=}")
        limit = limit or 25
        conditions: builtins.list[sql.Composable] = []
        params: builtins.list[object] = []
        if workflow_name:
            conditions.append(sql.SQL("workflow_name = %s"))
            params.append(workflow_name)
        for f in fold_filters(filters):
            condition, values = _condition(f)
            conditions.append(condition)
            params.append(values)
        where = (
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        )
        direction = sql.SQL("DESC" if order == OrderType.DESCENDING else "ASC")
        query = self._sql.compose(
            f"SELECT {_COLUMNS} FROM {{s}}.records{{where}} ORDER BY seq {{direction}} "
            "OFFSET %s LIMIT %s",
            where=where,
            direction=direction,
        )
        async with self._conns.connection() as conn:
            cur = await conn.execute(query, [*params, offset, limit])
            rows = await cur.fetchall()
        return [_record(row) for row in rows]

    async def list_outbox_events(
        self, workflow_name: str, limit: int
    ) -> builtins.list[OutboxEvent]:
        """Up to ``limit`` unpublished rows of the workflow, oldest first.

        Rows passed to :meth:`delete_outbox_events` since the last call are deleted by this
        same statement, and never listed again.
        """
        if limit <= 0:
            return []
        deleted, self._deferred = self._deferred, []
        try:
            async with self._conns.connection() as conn:
                if deleted:
                    cur = await self._conns.execute(
                        conn,
                        self._sql.get("list_outbox_deleting", conn),
                        {"deleted": deleted, "workflow_name": workflow_name, "limit": limit},
                    )
                else:
                    cur = await self._conns.execute(
                        conn, self._sql.get("list_outbox", conn), (workflow_name, limit)
                    )
                rows = await cur.fetchall()
        except BaseException:
            self._deferred[:0] = deleted  # not known to be deleted: keep them for next time
            raise
        return [
            OutboxEvent(
                id=id,
                workflow_name=name,
                data=bytes(data),
                created_at=created.astimezone(UTC),
            )
            for id, name, data, created in rows
        ]

    async def delete_outbox_event(self, id: str) -> None:
        """Remove a published row now; a missing row is not an error."""
        async with self._conns.connection() as conn:
            await conn.execute(self._sql.get("delete_outbox", conn), (id,))

    async def delete_outbox_events(self, ids: Sequence[str]) -> None:
        """Remove published rows; missing rows are ignored.

        The rows disappear from this store's listings at once, and from the database with
        its next :meth:`list_outbox_events` (in the same statement: the outbox publisher
        lists again right after deleting, so this saves it a round trip per batch). If the
        process dies in between, the rows are published again: at least once, as ever.
        More than ``10_000`` deferred ids are deleted at once.
        """
        self._deferred.extend(ids)
        if len(self._deferred) > _MAX_DEFERRED_DELETES:
            deleted, self._deferred = self._deferred, []
            try:
                async with self._conns.connection() as conn:
                    await conn.execute(self._sql.get("delete_outbox_many", conn), (deleted,))
            except BaseException:
                self._deferred[:0] = deleted
                raise


_Queued = tuple[Record, dict[str, object], "asyncio.Future[None]"]
"""A new run waiting to be written with others: its record, its parameters, its outcome."""


class _Inserts:
    """New runs of workflows whose events the store writes itself, together when many come.

    A write holds the lock of its event's topic until it commits, so new runs of one
    workflow (whose events share the first topic) written at once would commit one after
    the other. Instead the first goes at once, and those that come while it is in flight
    wait and go together, in one statement, as soon as it is done.
    """

    def __init__(self, store: PostgresRecordStore) -> None:
        self._store = store
        self._queue: builtins.list[_Queued] = []
        self._busy: asyncio.AbstractEventLoop | None = None  # the loop a write runs on
        self._draining: set[asyncio.Task[None]] = set()
        self._closed = False

    async def write(
        self, record: Record, params: dict[str, object], statements: tuple[str, str]
    ) -> tuple[Any, ...] | None:
        """Insert ``record``, with others if one is in flight; raises as :meth:`store`.

        Returns the row of ``statements`` that wrote it when it went alone, else None.
        """
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError("the PostgresRecordStore is closed")
        if self._busy is loop:
            future: asyncio.Future[None] = loop.create_future()
            self._queue.append((record, params, future))
            await future  # cancelled before its turn: it is not written
            return None
        self._busy = loop
        try:
            return await self._store._write(record, params, statements)
        finally:
            self._next(loop)

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._queue or self._closed:
            self._busy = None
            return
        task = loop.create_task(self._drain(), name="luno_wf_postgres:inserts")
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _drain(self) -> None:
        """Write what waits, batch after batch, until nothing does; then free the lane."""
        try:
            while self._queue and not self._closed:
                batch, self._queue = self._queue, []
                try:
                    await self._store._insert_together(batch)
                except Exception as err:  # the database failed: each caller hears it
                    _fail(batch, err)
                except BaseException:
                    _fail(batch, RuntimeError("the PostgresRecordStore is closed"))
                    raise
        finally:
            self._busy = None
            if self._closed:
                queue, self._queue = self._queue, []
                _fail(queue, RuntimeError("the PostgresRecordStore is closed"))

    async def close(self) -> None:
        """Stop writing: runs still waiting fail with :class:`RuntimeError`."""
        self._closed = True
        for task in list(self._draining):
            await stop_task(task)
        queue, self._queue = self._queue, []
        _fail(queue, RuntimeError("the PostgresRecordStore is closed"))
        self._busy = None


def _fail(batch: builtins.list[_Queued], err: Exception) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(err)


def _condition(f: RecordFilter) -> tuple[sql.Composable, object]:
    if f.kind is FilterKind.FOREIGN_ID:
        return sql.SQL("foreign_id = ANY(%s)"), [str(v) for v in f.values]
    if f.kind is FilterKind.RUN_STATE:
        return sql.SQL("run_state = ANY(%s::integer[])"), [int(v) for v in f.values]  # type: ignore[arg-type]
    if f.kind is FilterKind.STATUS:
        return sql.SQL("status = ANY(%s::bigint[])"), [int(v) for v in f.values]  # type: ignore[arg-type]
    (moment,) = f.values
    assert isinstance(moment, datetime)
    if f.kind is FilterKind.CREATED_AT_AFTER:
        return sql.SQL("created_at > %s"), moment
    return sql.SQL("created_at < %s"), moment
