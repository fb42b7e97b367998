"""Two worker processes share a workflow on PostgreSQL; one is SIGKILLed mid-way.

Every run must still complete, each write must be exactly one version after the previous
(an audit trigger on the records table sees every write), and each step's side effect must
exist for exactly the version it was applied at. The outbox must drain.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# The shared worker, run as a module: as a script its folder would shadow `typing`.
WORKER = ("-m", "tests.worker")
RUNS = 500
ROOT = Path(__file__).parents[2]

SETUP = """
CREATE TABLE {s}.effects (run_id text NOT NULL, status bigint NOT NULL,
                          version bigint NOT NULL, pid integer NOT NULL);
CREATE TABLE {s}.audit (run_id text NOT NULL, old_version bigint, new_version bigint NOT NULL);
CREATE FUNCTION {s}.audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.audit VALUES (
        NEW.run_id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.version END, NEW.version);
    RETURN NEW;
END $$;
CREATE TRIGGER audit_write AFTER INSERT OR UPDATE ON {s}.records
    FOR EACH ROW EXECUTE FUNCTION {s}.audit_write();
"""


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self.proc = proc
        self.log = log

    async def line(self, expected: str, timeout: float = 30) -> None:
        assert self.proc.stdout is not None
        got = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert got.decode().strip() == expected, f"worker said {got!r}; log:\n{self.tail()}"

    def text(self) -> str:
        """Everything the worker wrote to stderr so far."""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def tail(self) -> str:
        return self.text()[-3000:]


async def start(dsn: str, schema: str, *args: str) -> Worker:
    log = tempfile.NamedTemporaryFile(prefix="crash-worker-", suffix=".log")  # noqa: SIM115
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *WORKER,
        dsn,
        schema,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
    )
    return Worker(proc, log)


async def poll_until(check: Callable[[], Awaitable[bool]], timeout: float, every: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(every)


async def scalar(pool: AsyncConnectionPool[Any], query: str, schema: str) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute(sql.SQL(query).format(s=sql.Identifier(schema)))
        row = await cur.fetchone()
        assert row is not None
        return row[0]


async def test_sigkill_one_worker_mid_way(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> None:
    async with pg_pool.connection() as conn:
        await conn.execute(sql.SQL(SETUP).format(s=sql.Identifier(pg_schema)))

    doomed = await start(postgres_dsn, pg_schema, "--work-ms", "2")
    survivor: Worker | None = None
    try:
        await doomed.line("ready")
        await asyncio.sleep(0.5)  # it takes every role while alone
        survivor = await start(postgres_dsn, pg_schema, "--work-ms", "2", "--trigger", str(RUNS))
        await survivor.line("ready")

        done_sql = "SELECT count(*) FROM {s}.records WHERE status = 4"

        async def done(n: int) -> bool:
            return bool(await scalar(pg_pool, done_sql, pg_schema) >= n)

        async def outbox_empty() -> bool:
            return not await scalar(pg_pool, "SELECT count(*) FROM {s}.outbox", pg_schema)

        await poll_until(lambda: done(RUNS // 5), 30, 0.01)
        doomed.proc.send_signal(signal.SIGKILL)
        await doomed.proc.wait()
        done_at_kill = await scalar(pg_pool, done_sql, pg_schema)
        by_doomed = await scalar(
            pg_pool, f"SELECT count(*) FROM {{s}}.effects WHERE pid = {doomed.proc.pid}", pg_schema
        )
        assert done_at_kill < RUNS, "every run finished before the kill: the test proves nothing"
        # The two workers share the roles (a fleet): the doomed one worked until the kill.
        assert by_doomed > 0, "the doomed worker did no work before the kill"

        await survivor.line("triggered", timeout=40)
        await poll_until(lambda: done(RUNS), 40, 0.1)
        await poll_until(outbox_empty, 10, 0.1)
    finally:
        for worker in (doomed, survivor):
            if worker is not None and worker.proc.returncode is None:
                worker.proc.send_signal(signal.SIGTERM)
        if survivor is not None:
            assert await asyncio.wait_for(survivor.proc.wait(), 20) == 0, survivor.tail()
        if doomed.proc.returncode is None:
            doomed.proc.kill()
            await doomed.proc.wait()

    async with pg_pool.connection() as conn:
        s = sql.Identifier(pg_schema)
        cur = await conn.execute(
            sql.SQL("SELECT run_state, status, version, object FROM {}.records").format(s)
        )
        records = await cur.fetchall()
        assert len(records) == RUNS
        for run_state, status, version, obj in records:
            assert (run_state, status, version) == (5, 4, 4)
            assert json.loads(bytes(obj))["trail"] == [1, 2, 3]  # no step applied twice

        # Every write is the previous version plus one, and each version is written once.
        cur = await conn.execute(
            sql.SQL(
                "SELECT count(*) FILTER (WHERE old_version IS NULL AND new_version = 1), "
                "count(*) FILTER (WHERE new_version = old_version + 1), count(*), "
                "count(DISTINCT (run_id, new_version)) FROM {}.audit"
            ).format(s)
        )
        assert await cur.fetchone() == (RUNS, 3 * RUNS, 4 * RUNS, 4 * RUNS)

        # Each step's effect exists for exactly the version the step read; a step cut off
        # by the kill may have run twice (at least once), never at another version.
        cur = await conn.execute(
            sql.SQL(
                "SELECT count(DISTINCT (run_id, status, version)), "
                "count(*) FILTER (WHERE version <> status), count(*) FROM {}.effects"
            ).format(s)
        )
        distinct, wrong_version, attempts = await cur.fetchone() or (0, 0, 0)
        assert (distinct, wrong_version) == (3 * RUNS, 0)
        assert attempts - distinct <= 2 * 3 * 100  # at most the in-flight batches repeated
    print(
        f"\ncrash test: {done_at_kill} of {RUNS} done at the kill, "
        f"{attempts - distinct} step effects repeated after it"
    )
