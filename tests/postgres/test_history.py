"""Run history, compensation and inspection on PostgreSQL."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
from luno_wf_postgres import PostgresRecordStore, PostgresRoleScheduler, PostgresStreamer
from psycopg_pool import AsyncConnectionPool

from luno_wf import Builder, Run, RunState, Workflow
from luno_wf.testing import wait_for

pytestmark = pytest.mark.postgres


class Parcel(enum.IntEnum):
    UNKNOWN = 0
    ORDERED = 1
    PACKED = 2
    SENT = 3
    DELIVERED = 4


@attrs.define
class Box:
    id: str = ""
    count: int = 0
    undone: list[str] = attrs.field(factory=list)


async def advance(r: Run[Box, Parcel]) -> Parcel:
    r.object.count += 1
    return Parcel(r.status + 1)


async def lost(r: Run[Box, Parcel]) -> Parcel:
    raise RuntimeError("parcel lost")


async def undo(r: Run[Box, Parcel]) -> None:
    r.object.undone.append(r.status.name)


@pytest.fixture
async def store(pg_pool: AsyncConnectionPool[Any], pg_schema: str) -> PostgresRecordStore:
    return PostgresRecordStore(pg_pool, schema=pg_schema)


@pytest.fixture
async def streamer(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> AsyncIterator[PostgresStreamer]:
    found = PostgresStreamer(pg_pool, schema=pg_schema)
    yield found
    await found.close()


def build(
    streamer: PostgresStreamer,
    store: PostgresRecordStore,
    dsn: str,
    schema: str,
    *,
    last: Any = advance,
    **options: Any,
) -> Workflow[Box, Parcel]:
    b = Builder("parcels", Box, Parcel)
    b.add_step(Parcel.ORDERED, advance, Parcel.PACKED)
    b.add_step(Parcel.PACKED, advance, Parcel.SENT)
    b.add_step(Parcel.SENT, last, Parcel.DELIVERED, pause_after_err_count=1)
    for status in (Parcel.ORDERED, Parcel.PACKED, Parcel.SENT):
        b.add_compensation(status, undo)
    scheduler = PostgresRoleScheduler(
        dsn, namespace=schema, poll_interval=timedelta(milliseconds=100)
    )
    return b.build(streamer, store, scheduler, **options)


async def test_history_of_a_three_step_run_on_postgres(
    streamer: PostgresStreamer, store: PostgresRecordStore, postgres_dsn: str, pg_schema: str
) -> None:
    async with build(streamer, store, postgres_dsn, pg_schema, history_objects=True) as wf:
        run_id = await wf.trigger("p-1", initial_value=Box(id="p-1"), actor="operator:alice")
        await wf.await_status("p-1", run_id, Parcel.DELIVERED, timeout=timedelta(seconds=20))
        history = await wf.history(run_id)
        report = await wf.inspect(run_id)
    assert [t.version for t in history] == [1, 2, 3, 4]
    assert [t.status for t in history] == list(Parcel)[1:]
    assert [t.actor for t in history] == [
        "operator:alice",
        "step:ORDERED",
        "step:PACKED",
        "step:SENT",
    ]
    assert [t.at for t in history] == sorted(t.at for t in history)
    assert history[-1].run_state == RunState.COMPLETED
    assert [t.object_as(Box) for t in history] == [Box(id="p-1", count=n) for n in range(4)]
    assert report.history == history
    assert str(report).startswith(f"Run {run_id} of workflow 'parcels'")


async def test_compensation_on_postgres(
    streamer: PostgresStreamer, store: PostgresRecordStore, postgres_dsn: str, pg_schema: str
) -> None:
    async with build(streamer, store, postgres_dsn, pg_schema, last=lost) as wf:
        run_id = await wf.trigger("p-2", initial_value=Box(id="p-2"))
        paused = await wait_for(wf, "p-2", lambda r: r.run_state == RunState.PAUSED, timeout=20)
        assert paused.meta.error == "RuntimeError: parcel lost"
        await wf.compensate(run_id, "refund", to=Parcel.ORDERED)
        final = await wf.lookup(run_id)
        history = await wf.history(run_id)
    assert final.run_state == RunState.CANCELLED
    assert final.object.undone == ["SENT", "PACKED"]
    assert [t.actor for t in history][3:] == [
        "step:SENT",
        "compensate",
        "compensated:3",
        "compensated:2",
        "compensate",
    ]
    assert history[3].error == "RuntimeError: parcel lost"
