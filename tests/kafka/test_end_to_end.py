"""Workflows whose events travel through Kafka, in one process and across two."""

from __future__ import annotations

import asyncio
import enum
import json
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import IO, Any

import attrs
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import Builder, Run, RunState, TypedRecord
from luno_wf.memory import MemRecordStore, MemRoleScheduler
from tests.fixtures.kafka import make_streamer

pytestmark = pytest.mark.kafka

# The shared worker, run as a module: as a script its folder would shadow `typing`.
WORKER = ("-m", "tests.worker")
ROOT = Path(__file__).parents[2]
RUNS = 1000


class TaskStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    PROCESSED = 2
    COMPLETED = 3


@attrs.define
class Task:
    id: str
    name: str = ""


async def test_quickstart_on_kafka(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], unique: str
) -> None:
    completed: list[str] = []

    async def process(r: Run[Task, TaskStatus]) -> TaskStatus:
        r.object.name = r.object.name.upper()
        return TaskStatus.PROCESSED

    async def finish(r: Run[Task, TaskStatus]) -> TaskStatus:
        return TaskStatus.COMPLETED

    all_hooks_ran = asyncio.Event()

    async def on_complete(r: TypedRecord[Task, TaskStatus]) -> None:
        completed.append(r.run_id)
        if len(completed) == 20:
            all_hooks_ran.set()

    b = Builder(f"task-processor-{unique}", Task, TaskStatus)
    b.add_step(TaskStatus.CREATED, process, TaskStatus.PROCESSED)
    b.add_step(TaskStatus.PROCESSED, finish, TaskStatus.COMPLETED, parallel_count=4)
    b.on_complete(on_complete)
    async with make_streamer(kafka_bootstrap, kafka_consumer_options) as streamer:
        wf = b.build(streamer, MemRecordStore(), MemRoleScheduler())
        async with wf:
            run_ids = [
                await wf.trigger(f"task-{i}", initial_value=Task(id=f"task-{i}", name="invoice"))
                for i in range(20)
            ]
            for i, run_id in enumerate(run_ids):
                async with asyncio.timeout(30):
                    run = await wf.await_status(f"task-{i}", run_id, TaskStatus.COMPLETED)
                assert run.run_state == RunState.COMPLETED
                assert run.object == Task(id=f"task-{i}", name="INVOICE")
            async with asyncio.timeout(30):
                await all_hooks_ran.wait()
    assert sorted(completed) == sorted(run_ids)


SETUP = """
CREATE TABLE {s}.effects (run_id text NOT NULL, status bigint NOT NULL,
                          version bigint NOT NULL, pid integer NOT NULL);
"""


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self.proc = proc
        self.log = log

    async def line(self, expected: str, within: float = 60) -> None:
        assert self.proc.stdout is not None
        got = await asyncio.wait_for(self.proc.stdout.readline(), within)
        assert got.decode().strip() == expected, f"worker said {got!r}; log:\n{self.tail()}"

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]


async def start_worker(*args: str) -> Worker:
    log = tempfile.NamedTemporaryFile(prefix="kafka-worker-", suffix=".log")  # noqa: SIM115
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *WORKER,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
    )
    return Worker(proc, log)


async def fetch(pool: AsyncConnectionPool[Any], query: str, schema: str) -> list[Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql.SQL(query).format(s=sql.Identifier(schema)))
        rows: list[Any] = await cur.fetchall()
        return rows


async def done_count(pool: AsyncConnectionPool[Any], schema: str) -> int:
    [(done,)] = await fetch(pool, "SELECT count(*) FROM {s}.records WHERE status = 4", schema)
    return int(done)


async def until_done(
    pool: AsyncConnectionPool[Any], schema: str, n: int, *, within: float, every: float
) -> None:
    async with asyncio.timeout(within):
        while True:
            if await done_count(pool, schema) >= n:
                return
            await asyncio.sleep(every)


@pytest.mark.postgres
@pytest.mark.slow
async def test_thousand_runs_across_two_workers_one_killed(
    kafka_bootstrap: str,
    postgres_dsn: str,
    pg_pool: AsyncConnectionPool[Any],
    pg_schema: str,
) -> None:
    """Worker A holds every role; it is SIGKILLed mid-way and worker B finishes the runs.

    B resumes each consumer group at A's last committed offsets: every run completes, no
    step is applied at a wrong version, and only steps A had in flight run again.
    """
    async with pg_pool.connection() as conn:
        await conn.execute(sql.SQL(SETUP).format(s=sql.Identifier(pg_schema)))
    workflow = f"kafka-e2e-{uuid.uuid4().hex[:8]}"
    common = (postgres_dsn, pg_schema, "--kafka", kafka_bootstrap, "--workflow", workflow)
    doomed = await start_worker(*common)
    survivor: Worker | None = None
    try:
        await doomed.line("ready")
        await asyncio.sleep(1.0)  # alone, it takes every role
        survivor = await start_worker(*common, "--trigger", str(RUNS))
        await survivor.line("ready")
        await until_done(pg_pool, pg_schema, RUNS // 5, within=60, every=0.01)
        doomed.proc.send_signal(signal.SIGKILL)
        await doomed.proc.wait()
        done_at_kill = await done_count(pg_pool, pg_schema)
        assert done_at_kill < RUNS, "every run finished before the kill: the test proves nothing"
        await survivor.line("triggered")
        await until_done(pg_pool, pg_schema, RUNS, within=120, every=0.2)
    finally:
        for worker in (doomed, survivor):
            if worker is not None and worker.proc.returncode is None:
                worker.proc.send_signal(signal.SIGTERM)
        if survivor is not None:
            try:
                code = await asyncio.wait_for(survivor.proc.wait(), 30)
            except TimeoutError:
                survivor.proc.kill()
                code = await survivor.proc.wait()
            assert code == 0, survivor.tail()
        if doomed.proc.returncode is None:
            doomed.proc.kill()
            await doomed.proc.wait()

    records = await fetch(
        pg_pool, "SELECT run_state, status, version, object FROM {s}.records", pg_schema
    )
    assert len(records) == RUNS
    for run_state, status, version, obj in records:
        assert (run_state, status, version) == (5, 4, 4)
        assert json.loads(bytes(obj))["trail"] == [1, 2, 3]  # no transition applied twice

    # Each step's effect exists for exactly the version it read; a step that A had in
    # flight at the kill may have run again in B (at least once), never at another version.
    [(distinct, wrong_version, attempts, pids)] = await fetch(
        pg_pool,
        "SELECT count(DISTINCT (run_id, status, version)), "
        "count(*) FILTER (WHERE version <> status), count(*), count(DISTINCT pid) "
        "FROM {s}.effects",
        pg_schema,
    )
    assert (distinct, wrong_version, pids) == (3 * RUNS, 0, 2)
    assert attempts - distinct <= 3 * 200  # at most what was in flight, per step
    print(
        f"\nkafka end-to-end: {done_at_kill} of {RUNS} runs done at the kill, "
        f"{attempts - distinct} step effects repeated after it"
    )
