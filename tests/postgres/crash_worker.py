"""One worker process of the crash test: a 3-step workflow on PostgreSQL, until SIGTERM.

Usage: ``python crash_worker.py DSN SCHEMA [--trigger N]``. Prints ``ready`` once its
workflow runs and ``triggered`` after triggering N runs. Every step records its side effect
(run id, status, the version it read, this pid) in ``SCHEMA.effects`` before returning.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import os
import signal
from datetime import timedelta
from typing import Any

import attrs
from luno_wf_postgres import (
    PostgresRecordStore,
    PostgresRoleScheduler,
    PostgresStreamer,
)
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import Builder, Run

WORKFLOW = "crash-test"


class Status(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    FIRST = 2
    SECOND = 3
    DONE = 4


@attrs.define
class Job:
    n: int = 0
    trail: list[int] = attrs.Factory(list)


def step(pool: AsyncConnectionPool[Any], schema: str, to: Status) -> Any:
    insert = sql.SQL(
        "INSERT INTO {}.effects (run_id, status, version, pid) VALUES (%s, %s, %s, %s)"
    ).format(sql.Identifier(schema))

    async def fn(r: Run[Job, Status]) -> Status:
        async with pool.connection() as conn:
            await conn.execute(insert, (r.run_id, int(r.status), r.meta.version, os.getpid()))
        r.object.trail.append(int(r.status))
        await asyncio.sleep(0.002)  # some work, so that a kill lands mid-way
        return to

    return fn


async def main(dsn: str, schema: str, trigger: int) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=2, max_size=12, open=False)
    await pool.open(wait=True)
    streamer = PostgresStreamer(
        pool,
        schema=schema,
        # The default claim lease (30 s): the dead worker's events are taken over because
        # its server sessions end, not because their lease lapses.
        poll_frequency=timedelta(milliseconds=250),
    )
    scheduler = PostgresRoleScheduler(
        dsn, namespace=schema, poll_interval=timedelta(milliseconds=100)
    )
    b = Builder(WORKFLOW, Job, Status)
    b.add_step(Status.CREATED, step(pool, schema, Status.FIRST), Status.FIRST, parallel_count=2)
    b.add_step(Status.FIRST, step(pool, schema, Status.SECOND), Status.SECOND, parallel_count=2)
    b.add_step(Status.SECOND, step(pool, schema, Status.DONE), Status.DONE, parallel_count=2)
    wf = b.build(streamer, PostgresRecordStore(pool, schema=schema), scheduler)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with wf:
        print("ready", flush=True)
        for i in range(trigger):
            await wf.trigger(f"job-{i}", initial_value=Job(n=i))
        if trigger:
            print("triggered", flush=True)
        await stop.wait()
    await streamer.close()
    await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("--trigger", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.schema, args.trigger))
