from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import psycopg
import pytest
from luno_wf_postgres import PostgresRecordStore
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import (
    Meta,
    OrderType,
    Record,
    RunState,
    decode_outbox_data,
    filter_by_created_at_after,
    filter_by_created_at_before,
    filter_by_foreign_id,
    filter_by_run_state,
    filter_by_status,
)
from luno_wf.errors import RecordNotFound, StaleRecord, WorkflowInProgress

pytestmark = pytest.mark.postgres

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_record(
    workflow: str = "my_workflow",
    foreign_id: str = "Andrew Wormald",
    *,
    run_state: RunState = RunState.INITIATED,
    status: int = 1,
    version: int = 1,
    created_at: datetime = NOW,
) -> Record:
    return Record(
        workflow_name=workflow,
        foreign_id=foreign_id,
        run_id=str(uuid.uuid4()),
        run_state=run_state,
        status=status,
        object=b"{}",
        created_at=created_at,
        updated_at=created_at,
        meta=Meta(version=version),
    )


def bump(record: Record, **changes: Any) -> Record:
    meta = attrs.evolve(record.meta, version=record.meta.version + 1)
    return attrs.evolve(record, meta=meta, **changes)


@pytest.fixture
def store(pg_pool: AsyncConnectionPool[Any], pg_schema: str) -> PostgresRecordStore:
    return PostgresRecordStore(pg_pool, schema=pg_schema)


async def test_store_then_lookup_round_trips_every_field(store: PostgresRecordStore) -> None:
    record = attrs.evolve(
        make_record(),
        object=b"\x00\xffbinary",
        meta=Meta(
            run_state_reason="because",
            status_description="Started",
            version=1,
            trace_origin="a.py:1\nb.py:2",
            actor="api",
            error="ValueError: x",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        updated_at=NOW + timedelta(microseconds=1),
    )
    await store.store(record)
    assert await store.lookup(record.run_id) == record
    assert await store.latest(record.workflow_name, record.foreign_id) == record


async def test_lookup_missing_raises_record_not_found(store: PostgresRecordStore) -> None:
    with pytest.raises(RecordNotFound):
        await store.lookup("nope")
    with pytest.raises(RecordNotFound):
        await store.latest("my_workflow", "nobody")


async def test_update_is_compare_and_set_on_version(store: PostgresRecordStore) -> None:
    record = make_record()
    await store.store(record)
    second = bump(record, status=2, run_state=RunState.RUNNING)
    await store.store(second)
    assert await store.lookup(record.run_id) == second
    # Writing version 2 again (a stale writer) is refused, and so is skipping a version.
    with pytest.raises(StaleRecord, match="expected stored version 1, found 2"):
        await store.store(bump(record, status=3))
    with pytest.raises(StaleRecord):
        await store.store(bump(bump(second)))
    assert await store.lookup(record.run_id) == second
    # Refused writes leave no outbox row: one per successful store.
    assert len(await store.list_outbox_events("my_workflow", 100)) == 2


async def test_record_not_at_version_one_is_inserted_when_new(store: PostgresRecordStore) -> None:
    record = make_record(version=0)
    await store.store(record)
    await store.store(bump(record, status=3))
    high = make_record(foreign_id="other", version=7)
    await store.store(high)
    assert (await store.lookup(high.run_id)).meta.version == 7
    assert (await store.lookup(record.run_id)).status == 3


async def test_concurrent_writers_of_one_version_exactly_one_wins(
    store: PostgresRecordStore,
) -> None:
    record = make_record()
    await store.store(record)
    attempts = [bump(record, status=s) for s in range(2, 12)]
    results = await asyncio.gather(*(store.store(r) for r in attempts), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, StaleRecord) for r in results if r is not None)


async def test_one_unfinished_run_per_foreign_id(store: PostgresRecordStore) -> None:
    first = make_record()
    await store.store(first)
    with pytest.raises(WorkflowInProgress) as caught:
        await store.store(make_record())
    assert caught.value.run_id == first.run_id
    # Another foreign id, or another workflow, is independent.
    await store.store(make_record(foreign_id="someone else"))
    await store.store(make_record(workflow="other_workflow"))
    # Once the first run finishes a new one may start.
    await store.store(bump(first, run_state=RunState.COMPLETED, status=3))
    await store.store(make_record())


async def test_concurrent_triggers_of_one_foreign_id_one_wins(store: PostgresRecordStore) -> None:
    records = [make_record() for _ in range(8)]
    results = await asyncio.gather(*(store.store(r) for r in records), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, WorkflowInProgress) for r in results if r is not None)


async def test_latest_is_newest_created_not_last_stored(store: PostgresRecordStore) -> None:
    newer = make_record(run_state=RunState.COMPLETED, created_at=NOW + timedelta(seconds=5))
    older = make_record(run_state=RunState.COMPLETED, created_at=NOW)
    await store.store(newer)
    await store.store(older)
    await store.store(bump(older, status=3))
    assert (await store.latest("my_workflow", "Andrew Wormald")).run_id == newer.run_id
    # Ties on created_at: the last inserted wins.
    tie = make_record(run_state=RunState.COMPLETED, created_at=NOW + timedelta(seconds=5))
    await store.store(tie)
    assert (await store.latest("my_workflow", "Andrew Wormald")).run_id == tie.run_id


async def test_outbox_rows_oldest_first_one_per_store(store: PostgresRecordStore) -> None:
    record = make_record()
    await store.store(record)
    await store.store(bump(record, status=2, run_state=RunState.RUNNING))
    await store.store(make_record(workflow="other"))
    rows = await store.list_outbox_events("my_workflow", 1000)
    assert len(rows) == 2
    assert all(row.id.startswith("outbox-id-") for row in rows)
    assert all(row.workflow_name == "my_workflow" for row in rows)
    first, second = (decode_outbox_data(row.data) for row in rows)
    assert (first.type, first.topic, first.headers["record_version"]) == (1, "my_workflow-1", "1")
    assert (second.type, second.topic, second.headers["record_version"]) == (
        2,
        "my_workflow-2",
        "2",
    )
    assert first.headers["foreign_id"] == "Andrew Wormald"
    assert first.headers["workflow_name"] == "my_workflow"
    assert len(await store.list_outbox_events("my_workflow", 1)) == 1


async def test_delete_outbox_events(store: PostgresRecordStore) -> None:
    for i in range(5):
        await store.store(make_record(foreign_id=str(i)))
    rows = await store.list_outbox_events("my_workflow", 1000)
    await store.delete_outbox_event(rows[0].id)
    await store.delete_outbox_event(rows[0].id)  # missing: not an error
    await store.delete_outbox_events([rows[1].id, rows[2].id, "missing"])
    await store.delete_outbox_events([])
    left = await store.list_outbox_events("my_workflow", 1000)
    assert [row.id for row in left] == [row.id for row in rows[3:]]


async def test_list_pages_are_disjoint_and_ordered(store: PostgresRecordStore) -> None:
    # Every record has the same created_at: order must come from the insertion sequence.
    stored = []
    for i in range(60):
        record = make_record(
            "my_workflow" if i % 3 else "my_second_workflow",
            str(i),
        )
        await store.store(record)
        stored.append(record.run_id)
    everything = [r.run_id for r in await store.list("", limit=1000)]
    assert everything == stored
    pages = []
    for offset in range(0, 60, 7):
        pages += [r.run_id for r in await store.list("", offset=offset, limit=7)]
    assert pages == stored
    desc = [r.run_id for r in await store.list("", limit=1000, order=OrderType.DESCENDING)]
    assert desc == stored[::-1]
    assert [
        r.run_id for r in await store.list("", offset=50, limit=5, order=OrderType.DESCENDING)
    ] == (stored[::-1][50:55])
    assert len(await store.list("")) == 25  # default limit
    assert len(await store.list("", limit=0)) == 25
    mine = await store.list("my_workflow", limit=1000)
    assert len(mine) == 40 and all(r.workflow_name == "my_workflow" for r in mine)
    with pytest.raises(ValueError, match="offset"):
        await store.list("", offset=-1)


async def test_list_filters(store: PostgresRecordStore) -> None:
    counts = {
        RunState.INITIATED: 3,
        RunState.RUNNING: 5,
        RunState.COMPLETED: 4,
        RunState.PAUSED: 2,
    }
    n = 0
    for state, count in counts.items():
        for _ in range(count):
            n += 1
            await store.store(
                make_record(
                    foreign_id=f"f{n}",
                    run_state=state,
                    status=int(state),
                    created_at=NOW + timedelta(seconds=n),
                )
            )
    for state, count in counts.items():
        found = await store.list("my_workflow", limit=100, filters=[filter_by_run_state(state)])
        assert len(found) == count and all(r.run_state == state for r in found)
        found = await store.list("my_workflow", limit=100, filters=[filter_by_status(int(state))])
        assert len(found) == count
    both = await store.list(
        "my_workflow",
        limit=100,
        filters=[filter_by_run_state(RunState.RUNNING, RunState.PAUSED)],
    )
    assert len(both) == 7
    assert [
        r.foreign_id
        for r in await store.list("my_workflow", filters=[filter_by_foreign_id("f2", "f9")])
    ] == [
        "f2",
        "f9",
    ]
    window = [
        filter_by_created_at_after(NOW + timedelta(seconds=3)),
        filter_by_created_at_before(NOW + timedelta(seconds=6)),
    ]
    assert [r.foreign_id for r in await store.list("my_workflow", filters=window)] == ["f4", "f5"]
    # A later filter of the same kind replaces the earlier one.
    replaced = [filter_by_foreign_id("f1"), filter_by_foreign_id("f3")]
    assert [r.foreign_id for r in await store.list("my_workflow", filters=replaced)] == ["f3"]
    combined = [filter_by_run_state(RunState.RUNNING), filter_by_foreign_id("f4", "f1")]
    assert [r.foreign_id for r in await store.list("my_workflow", filters=combined)] == ["f4"]


async def test_naive_timestamps_are_refused(store: PostgresRecordStore) -> None:
    record = attrs.evolve(make_record(), created_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.store(record)


async def test_batch_deletes_ride_on_the_next_listing(
    store: PostgresRecordStore,
    pg_pool: AsyncConnectionPool[Any],
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = PostgresRecordStore(pg_pool, schema=pg_schema)
    for i in range(4):
        await store.store(make_record(foreign_id=str(i)))
    rows = await store.list_outbox_events("my_workflow", 10)
    await store.delete_outbox_events([rows[0].id, rows[1].id])
    # Another store (process) still sees them until this store lists again...
    assert len(await other.list_outbox_events("my_workflow", 10)) == 4
    # ...which deletes them in the same statement, and never lists them itself.
    assert [r.id for r in await store.list_outbox_events("my_workflow", 1)] == [rows[2].id]
    assert [r.id for r in await other.list_outbox_events("my_workflow", 10)] == [
        rows[2].id,
        rows[3].id,
    ]
    # Past the bound, deferred deletes go at once.
    import luno_wf_postgres.recordstore as module

    monkeypatch.setattr(module, "_MAX_DEFERRED_DELETES", 1)
    await store.delete_outbox_events([rows[2].id, rows[3].id])
    assert await other.list_outbox_events("my_workflow", 10) == []


async def test_a_write_and_its_history_entry_are_one_statement(
    store: PostgresRecordStore,
    pg_pool: AsyncConnectionPool[Any],
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Insert, update and a batched update: one statement each, record, outbox and history."""
    await store.store(make_record(foreign_id="warm-up"))
    executed: list[object] = []
    execute = psycopg.AsyncCursor.execute

    async def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        executed.append(query)
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", counting)
    first = make_record()
    second = make_record(foreign_id="another")
    writes: list[list[Record]] = [
        [first],
        [bump(first, status=2)],
        [bump(bump(first), status=3), bump(second)],
    ]
    await store.store(first)
    assert len(executed) == 1, "an insert is one statement"
    await store.store(writes[1][0])
    assert len(executed) == 2, "an update is one statement"
    await store.store(second)
    assert await store.store_many(writes[2]) == [None, None]
    assert len(executed) == 4, "a batch of updates is one statement"
    monkeypatch.undo()

    # Each write's rows were written by one transaction (the same xmin).
    query = sql.SQL(
        "SELECT r.xmin::text, h.xmin::text FROM {s}.records r "
        "JOIN {s}.history h ON h.run_id = r.run_id AND h.version = r.version "
        "WHERE r.run_id = %s"
    ).format(s=sql.Identifier(pg_schema))
    async with pg_pool.connection() as conn:
        for run_id in (first.run_id, second.run_id):
            [(record_xid, entry_xid)] = await (await conn.execute(query, (run_id,))).fetchall()
            assert record_xid == entry_xid
    assert [e.version for e in await store.history(first.run_id)] == [1, 2, 3]
    assert [e.version for e in await store.history(second.run_id)] == [1, 2]


async def test_history_reads_by_primary_key(
    store: PostgresRecordStore, pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    """``history(run_id)`` reads the run's entries through ``history_pkey``, nothing else."""
    s = sql.Identifier(pg_schema)
    async with pg_pool.connection() as conn:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {s}.records (run_id, workflow_name, foreign_id, run_state, status, "
                "object, created_at, updated_at, version, meta) "
                "SELECT 'r' || g, 'w', 'f' || g, 5, 1, '', now(), now(), 10, '{{}}' "
                "FROM generate_series(1, 2000) g"
            ).format(s=s)
        )
        await conn.execute(
            sql.SQL(
                "INSERT INTO {s}.history (run_id, version, workflow_name, foreign_id, status, "
                "run_state, reason, actor, at, error, trace_id) "
                "SELECT 'r' || g, v, 'w', 'f' || g, 1, 2, '', '', now(), '', '' "
                "FROM generate_series(1, 2000) g, generate_series(1, 10) v"
            ).format(s=s)
        )
        await conn.execute(sql.SQL("ANALYZE {s}.records, {s}.history").format(s=s))
        statement = store._sql.get("history", conn)
        cur = await conn.execute(b"EXPLAIN " + statement, ("r123",))
        plan = "\n".join(row[0] for row in await cur.fetchall())
    assert "history_pkey" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert [e.version for e in await store.history("r123")] == list(range(1, 11))


async def test_prune_skips_entries_a_write_holds(
    store: PostgresRecordStore, postgres_dsn: str, pg_schema: str
) -> None:
    """Pruning does not wait for an entry locked by a transaction: it leaves it for later."""
    v1 = make_record()
    v2 = bump(v1, status=2, updated_at=NOW + timedelta(seconds=1))
    v3 = bump(v2, status=3, updated_at=NOW + timedelta(seconds=2))
    for record in (v1, v2, v3):
        await store.store(record)
    later = NOW + timedelta(hours=1)
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as holder:
        await holder.execute(
            sql.SQL("SELECT 1 FROM {}.history WHERE run_id = %s AND version = 1 FOR UPDATE").format(
                sql.Identifier(pg_schema)
            ),
            (v1.run_id,),
        )
        assert await asyncio.wait_for(store.prune_history(later), timeout=5) == 1
        assert [e.version for e in await store.history(v1.run_id)] == [1, 3]
        await holder.rollback()
    assert await store.prune_history(later) == 1
    assert [e.version for e in await store.history(v1.run_id)] == [3]
