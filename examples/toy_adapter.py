"""A toy record store on SQLite, proven by the conformance suite.

Copy it to start an adapter of your own (docs/adapters.md walks through it). The adapter
comes first; the conformance test class is at the bottom. In your project the adapter
lives in your package and the test class in your tests; here they share one file so the
example runs as is:

    pytest examples/toy_adapter.py

It is a toy because SQLite calls block the event loop (a real adapter uses an async
driver) and because it keeps everything on one connection.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from luno_wf_adaptertest import RecordStoreContract, RecordStoreFactory

from luno_wf import (
    FilterKind,
    Meta,
    OrderType,
    OutboxEvent,
    Record,
    RecordFilter,
    RunState,
    check_foreign_id,
    make_outbox_event,
)
from luno_wf.errors import RecordNotFound, StaleRecord, WorkflowInProgress

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,  -- first-stored order, for list()
    run_id             TEXT NOT NULL UNIQUE,
    workflow_name      TEXT NOT NULL,
    foreign_id         TEXT NOT NULL,
    run_state          INTEGER NOT NULL,
    status             INTEGER NOT NULL,
    object             BLOB NOT NULL,
    created_at         INTEGER NOT NULL,                   -- microseconds since the epoch
    updated_at         INTEGER NOT NULL,
    run_state_reason   TEXT NOT NULL,
    status_description TEXT NOT NULL,
    version            INTEGER NOT NULL,
    trace_origin       TEXT NOT NULL,
    actor              TEXT NOT NULL,
    error              TEXT NOT NULL,
    trace_id           TEXT NOT NULL,
    traceparent        TEXT NOT NULL,
    tracestate         TEXT NOT NULL
);
-- One unfinished (initiated, running, paused) run per foreign id, enforced by the database.
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_unfinished
    ON runs (workflow_name, foreign_id) WHERE run_state IN (1, 2, 3);
CREATE TABLE IF NOT EXISTS outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,       -- oldest first
    id            TEXT NOT NULL UNIQUE,
    workflow_name TEXT NOT NULL,
    data          BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);
"""

COLUMNS = (
    "run_id, workflow_name, foreign_id, run_state, status, object, created_at, updated_at, "
    "run_state_reason, status_description, version, trace_origin, actor, error, trace_id, "
    "traceparent, tracestate"
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def to_row(record: Record) -> tuple[object, ...]:
    meta = record.meta
    return (
        record.run_id,
        record.workflow_name,
        record.foreign_id,
        int(record.run_state),
        record.status,
        record.object,
        to_micros(record.created_at),
        to_micros(record.updated_at),
        meta.run_state_reason,
        meta.status_description,
        meta.version,
        meta.trace_origin,
        meta.actor,
        meta.error,
        meta.trace_id,
        meta.traceparent,
        meta.tracestate,
    )


def from_row(row: sqlite3.Row) -> Record:
    return Record(
        workflow_name=row["workflow_name"],
        foreign_id=row["foreign_id"],
        run_id=row["run_id"],
        run_state=RunState(row["run_state"]),
        status=row["status"],
        object=bytes(row["object"]),
        created_at=from_micros(row["created_at"]),
        updated_at=from_micros(row["updated_at"]),
        meta=Meta(
            run_state_reason=row["run_state_reason"],
            status_description=row["status_description"],
            version=row["version"],
            trace_origin=row["trace_origin"],
            actor=row["actor"],
            error=row["error"],
            trace_id=row["trace_id"],
            traceparent=row["traceparent"],
            tracestate=row["tracestate"],
        ),
    )


def where(workflow_name: str, filters: Sequence[RecordFilter]) -> tuple[str, list[object]]:
    """The WHERE clause of list(): filters of different kinds ANDed, values ORed."""
    clauses: list[str] = []
    params: list[object] = []
    if workflow_name:
        clauses.append("workflow_name = ?")
        params.append(workflow_name)
    # A later filter of the same kind replaces an earlier one.
    for f in {f.kind: f for f in filters}.values():
        if f.kind in (FilterKind.CREATED_AT_AFTER, FilterKind.CREATED_AT_BEFORE):
            (moment,) = f.values
            assert isinstance(moment, datetime)
            op = ">" if f.kind is FilterKind.CREATED_AT_AFTER else "<"
            clauses.append(f"created_at {op} ?")
            params.append(to_micros(moment))
            continue
        column = {
            FilterKind.FOREIGN_ID: "foreign_id",
            FilterKind.RUN_STATE: "run_state",
            FilterKind.STATUS: "status",
        }[f.kind]
        clauses.append(f"{column} IN ({', '.join('?' * len(f.values))})")
        params.extend(f.values)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class SqliteRecordStore:
    """A RecordStore on one SQLite database. Call :meth:`open` before use, :meth:`close` after.

    Each store() is one transaction: the compare-and-set on meta.version, the record, and
    its outbox row commit together or not at all.
    """

    def __init__(self, path: str = ":memory:") -> None:
        self._path = path  # no I/O here: open() connects
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._db = sqlite3.connect(self._path, isolation_level=None)  # explicit transactions
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SqliteRecordStore is not open: call await store.open() first")
        return self._db

    async def store(self, record: Record) -> None:
        if record.meta.version <= 1:
            check_foreign_id(record.foreign_id)  # the rule every store keeps
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._write(db, record)
        except Exception:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _write(self, db: sqlite3.Connection, record: Record) -> None:
        found = db.execute("SELECT version FROM runs WHERE run_id = ?", (record.run_id,)).fetchone()
        try:
            if found is None:
                db.execute(
                    f"INSERT INTO runs ({COLUMNS}) VALUES ({', '.join('?' * 17)})", to_row(record)
                )
            elif found["version"] != record.meta.version - 1:
                raise StaleRecord(
                    f"expected stored version {record.meta.version - 1}, found {found['version']}",
                    workflow_name=record.workflow_name,
                    run_id=record.run_id,
                )
            else:
                assignments = ", ".join(f"{c.strip()} = ?" for c in COLUMNS.split(","))
                db.execute(
                    f"UPDATE runs SET {assignments} WHERE run_id = ?",
                    (*to_row(record), record.run_id),
                )
        except sqlite3.IntegrityError as exc:  # runs_one_unfinished
            raise WorkflowInProgress(
                workflow_name=record.workflow_name, foreign_id=record.foreign_id
            ) from exc
        outbox_id, data = make_outbox_event(record)
        db.execute(
            "INSERT INTO outbox (id, workflow_name, data, created_at) VALUES (?, ?, ?, ?)",
            (outbox_id, record.workflow_name, data, to_micros(datetime.now(UTC))),
        )

    async def lookup(self, run_id: str) -> Record:
        row = self.db.execute(f"SELECT {COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RecordNotFound(run_id=run_id)
        return from_row(row)

    async def latest(self, workflow_name: str, foreign_id: str) -> Record:
        row = self.db.execute(
            f"SELECT {COLUMNS} FROM runs WHERE workflow_name = ? AND foreign_id = ? "
            "ORDER BY created_at DESC, seq DESC LIMIT 1",
            (workflow_name, foreign_id),
        ).fetchone()
        if row is None:
            raise RecordNotFound(workflow_name=workflow_name, foreign_id=foreign_id)
        return from_row(row)

    async def list(
        self,
        workflow_name: str,
        *,
        offset: int = 0,
        limit: int = 25,
        order: OrderType = OrderType.ASCENDING,
        filters: Sequence[RecordFilter] = (),
    ) -> builtins.list[Record]:
        clause, params = where(workflow_name, filters)
        direction = "DESC" if order == OrderType.DESCENDING else "ASC"
        rows = self.db.execute(
            f"SELECT {COLUMNS} FROM runs{clause} ORDER BY seq {direction} LIMIT ? OFFSET ?",
            (*params, limit or 25, offset),
        ).fetchall()
        return [from_row(row) for row in rows]

    async def list_outbox_events(
        self, workflow_name: str, limit: int
    ) -> builtins.list[OutboxEvent]:
        rows = self.db.execute(
            "SELECT id, workflow_name, data, created_at FROM outbox "
            "WHERE workflow_name = ? ORDER BY seq LIMIT ?",
            (workflow_name, limit),
        ).fetchall()
        return [
            OutboxEvent(
                id=row["id"],
                workflow_name=row["workflow_name"],
                data=bytes(row["data"]),
                created_at=from_micros(row["created_at"]),
            )
            for row in rows
        ]

    async def delete_outbox_event(self, id: str) -> None:
        self.db.execute("DELETE FROM outbox WHERE id = ?", (id,))


# -- The factory and the conformance tests ----------------------------------------------


@contextlib.asynccontextmanager
async def sqlite_store() -> AsyncIterator[SqliteRecordStore]:
    """A factory for the suite: a fresh, open store per test; closed after it."""
    store = SqliteRecordStore(":memory:")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


class TestSqliteRecordStore(RecordStoreContract):
    @pytest.fixture
    def make_store(self) -> RecordStoreFactory:
        return sqlite_store
