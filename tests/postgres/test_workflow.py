"""Workflows end to end on PostgreSQL alone: store, streamer, role scheduler, timeouts."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from luno_wf_postgres import (
    PostgresRecordStore,
    PostgresRoleScheduler,
    PostgresStreamer,
    PostgresTimeoutStore,
)
from psycopg_pool import AsyncConnectionPool

from luno_wf import Builder, Run, RunState, TypedRecord, Workflow

pytestmark = pytest.mark.postgres


class TaskStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    PROCESSED = 2
    WAITING = 3
    COMPLETED = 4


@attrs.define
class Task:
    id: str
    name: str = ""
    timed_out: bool = False


async def process(r: Run[Task, TaskStatus]) -> TaskStatus:
    r.object.name = r.object.name.upper()
    return TaskStatus.PROCESSED


async def finish(r: Run[Task, TaskStatus]) -> TaskStatus:
    return TaskStatus.COMPLETED


class Adapters:
    def __init__(self, pool: AsyncConnectionPool[Any], schema: str, dsn: str) -> None:
        self.streamer = PostgresStreamer(pool, schema=schema)
        self.store = PostgresRecordStore(pool, schema=schema)
        self.scheduler = PostgresRoleScheduler(
            dsn, namespace=schema, poll_interval=timedelta(milliseconds=100)
        )
        self.timeouts = PostgresTimeoutStore(pool, schema=schema)


@pytest.fixture
async def adapters(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> AsyncIterator[Adapters]:
    found = Adapters(pg_pool, pg_schema, postgres_dsn)
    yield found
    await found.streamer.close()


def quickstart(adapters: Adapters) -> Workflow[Task, TaskStatus]:
    b = Builder("task-processor", Task, TaskStatus)
    b.add_step(TaskStatus.CREATED, process, TaskStatus.PROCESSED)
    b.add_step(TaskStatus.PROCESSED, finish, TaskStatus.COMPLETED, parallel_count=4)
    return b.build(adapters.streamer, adapters.store, adapters.scheduler)


async def test_quickstart_on_postgres(adapters: Adapters) -> None:
    completed: list[TypedRecord[Task, TaskStatus]] = []
    hooked = asyncio.Event()

    async def on_complete(r: TypedRecord[Task, TaskStatus]) -> None:
        completed.append(r)
        hooked.set()

    b = Builder("task-processor", Task, TaskStatus)
    b.add_step(TaskStatus.CREATED, process, TaskStatus.PROCESSED)
    b.add_step(TaskStatus.PROCESSED, finish, TaskStatus.COMPLETED, parallel_count=4)
    b.on_complete(on_complete)
    wf = b.build(adapters.streamer, adapters.store, adapters.scheduler)
    async with wf:
        run_id = await wf.trigger("task-1", initial_value=Task(id="task-1", name="invoice"))
        run = await asyncio.wait_for(wf.await_status("task-1", run_id, TaskStatus.COMPLETED), 20)
        assert run.object == Task(id="task-1", name="INVOICE")
        assert run.run_state == RunState.COMPLETED
        await asyncio.wait_for(hooked.wait(), 20)
        assert [r.run_id for r in completed] == [run_id]
        stored = await wf.lookup(run_id)
        assert stored.meta.version == 3
        # A second run of the same foreign id may start once the first is finished.
        again = await wf.trigger("task-1", initial_value=Task(id="task-1", name="again"))
        await asyncio.wait_for(wf.await_status("task-1", again, TaskStatus.COMPLETED), 20)
        assert (await wf.latest("task-1")).run_id == again
        async with asyncio.timeout(10):  # everything gets published
            while True:
                if not await adapters.store.list_outbox_events("task-processor", 10):
                    break
                await asyncio.sleep(0.05)


async def test_many_runs_complete(adapters: Adapters) -> None:
    wf = quickstart(adapters)
    async with wf:
        ids = [
            await wf.trigger(f"t-{i}", initial_value=Task(id=str(i), name=f"n{i}"))
            for i in range(100)
        ]
        runs = await asyncio.wait_for(
            asyncio.gather(
                *(
                    wf.await_status(f"t-{i}", run_id, TaskStatus.COMPLETED)
                    for i, run_id in enumerate(ids)
                )
            ),
            60,
        )
        assert [r.object.name for r in runs] == [f"N{i}" for i in range(100)]


async def test_timeout_on_postgres(adapters: Adapters) -> None:
    async def wait(r: Run[Task, TaskStatus]) -> TaskStatus:
        return TaskStatus.WAITING

    async def timer(r: Run[Task, TaskStatus], now: datetime) -> datetime | None:
        return now + timedelta(milliseconds=200)

    async def expired(r: Run[Task, TaskStatus], now: datetime) -> TaskStatus:
        r.object.timed_out = True
        return TaskStatus.COMPLETED

    b = Builder("timeouts", Task, TaskStatus)
    b.add_step(TaskStatus.CREATED, wait, TaskStatus.WAITING)
    b.add_timeout(
        TaskStatus.WAITING,
        timer,
        expired,
        TaskStatus.COMPLETED,
        polling_frequency=timedelta(milliseconds=100),
    )
    wf = b.build(
        adapters.streamer, adapters.store, adapters.scheduler, timeout_store=adapters.timeouts
    )
    async with wf:
        run_id = await wf.trigger("t", initial_value=Task(id="t"))
        run = await asyncio.wait_for(wf.await_status("t", run_id, TaskStatus.COMPLETED), 20)
        assert run.object.timed_out
    rows = await adapters.timeouts.list("timeouts")
    assert rows == []  # fired: completed, so no longer listed
    assert datetime.now(UTC) > run.created_at


async def test_concurrent_step_consumers_ack_out_of_order(adapters: Adapters) -> None:
    async def slow_for_some(r: Run[Task, TaskStatus]) -> TaskStatus:
        # Later runs finish first, so acks reach the receiver out of order.
        await asyncio.sleep(0.02 if int(r.object.id) % 3 == 0 else 0)
        return TaskStatus.PROCESSED

    b = Builder("concurrent", Task, TaskStatus)
    b.add_step(TaskStatus.CREATED, slow_for_some, TaskStatus.PROCESSED, concurrency=8)
    b.add_step(TaskStatus.PROCESSED, finish, TaskStatus.COMPLETED, parallel_count=2)
    wf = b.build(adapters.streamer, adapters.store, adapters.scheduler)
    async with wf:
        ids = [await wf.trigger(f"c-{i}", initial_value=Task(id=str(i))) for i in range(60)]
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    wf.await_status(f"c-{i}", run_id, TaskStatus.COMPLETED)
                    for i, run_id in enumerate(ids)
                )
            ),
            60,
        )
        versions = [(await wf.lookup(run_id)).meta.version for run_id in ids]
        assert versions == [3] * len(ids)
