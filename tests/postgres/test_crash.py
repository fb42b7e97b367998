"""Two worker processes share a workflow on PostgreSQL; one is SIGKILLed mid-way.

Every run must still complete, each write must be exactly one version after the previous
(an audit trigger on the records table sees every write), and each step's side effect must
exist for exactly the version it was applied at. The outbox must drain. Each run's history
must be exactly the writes the trigger saw: one entry per version, none for a write the kill
cut off, none missing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import pytest
from luno_wf_postgres import PostgresRecordStore
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import RunState

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# The shared worker, run as a module: as a script its folder would shadow `typing`.
WORKER = ("-m", "tests.worker")
RUNS = 500
ROOT = Path(__file__).parents[2]

SETUP = """
CREATE TABLE {s}.effects (run_id text NOT NULL, status bigint NOT NULL,
                          version bigint NOT NULL, pid integer NOT NULL);
CREATE TABLE {s}.audit (run_id text NOT NULL, old_version bigint, new_version bigint NOT NULL,
                        status bigint NOT NULL, run_state integer NOT NULL,
                        actor text NOT NULL, at timestamptz NOT NULL);
CREATE FUNCTION {s}.audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.audit VALUES (
        NEW.run_id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.version END, NEW.version,
        NEW.status, NEW.run_state, coalesce(NEW.meta->>'Actor', ''), NEW.updated_at);
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

    def close(self) -> None:
        """Close (and so delete) the log; stop the process first."""
        self.log.close()


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


async def stop_all(*workers: Worker | None, timeout: float = 30) -> None:
    """Stop every worker still running (resumed if stopped, then SIGTERM) and close every log.

    Each worker that was still running must exit cleanly within ``timeout`` (killed if not);
    one that had already ended (killed by the test) is only reaped.
    """
    present = [w for w in workers if w is not None]
    running = [w for w in present if w.proc.returncode is None]
    for worker in running:
        worker.proc.send_signal(signal.SIGCONT)
        worker.proc.send_signal(signal.SIGTERM)
    codes = []
    for worker in present:
        try:
            code = await asyncio.wait_for(worker.proc.wait(), timeout)
        except TimeoutError:
            worker.proc.kill()
            code = await worker.proc.wait()
        if worker in running:
            codes.append((code, worker.tail()))
        worker.close()
    for code, tail in codes:
        assert code == 0, tail


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


async def assert_history_is_the_audit(
    pg_pool: AsyncConnectionPool[Any], schema: str, runs: int
) -> None:
    """Each run's history, read through the store, is exactly the writes the trigger saw.

    The trigger fires on every write that committed, and on none that the kill cut off or
    the compare-and-set refused: so one entry per audited version, with the audited status,
    run state, actor and time, versions 1..n without a gap, and no entry anywhere else.
    """
    audited: defaultdict[str, list[tuple[Any, ...]]] = defaultdict(list)
    async with pg_pool.connection() as conn:
        s = sql.Identifier(schema)
        cur = await conn.execute(
            sql.SQL(
                "SELECT run_id, new_version, status, run_state, actor, at FROM {}.audit "
                "ORDER BY run_id, new_version"
            ).format(s)
        )
        for run_id, *write in await cur.fetchall():
            audited[run_id].append(tuple(write))
        cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}.history").format(s))
        kept = await cur.fetchone()
    assert len(audited) == runs
    assert kept == (4 * runs,), f"{kept} history entries for {4 * runs} audited writes"

    store = PostgresRecordStore(pg_pool, schema=schema)
    # The worker's statuses: CREATED 1, FIRST 2, SECOND 3, DONE 4 (tests/worker.py).
    expected = [
        (1, RunState.INITIATED, "api"),
        (2, RunState.RUNNING, "step:CREATED"),
        (3, RunState.RUNNING, "step:FIRST"),
        (4, RunState.COMPLETED, "step:SECOND"),
    ]
    for run_id, writes in audited.items():
        entries = await store.history(run_id)
        got = [(e.version, e.status, int(e.run_state), e.actor, e.at) for e in entries]
        assert got == writes, f"run {run_id}: history {got!r} but the trigger saw {writes!r}"
        assert [e.version for e in entries] == [1, 2, 3, 4], f"run {run_id}: {entries!r}"
        assert [(e.status, e.run_state, e.actor) for e in entries] == expected, run_id
        assert all(e.run_id == run_id and e.error == "" for e in entries), entries


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
        await stop_all(doomed, survivor, timeout=20)

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

    await assert_history_is_the_audit(pg_pool, pg_schema, RUNS)
    print(
        f"\ncrash test: {done_at_kill} of {RUNS} done at the kill, "
        f"{attempts - distinct} step effects repeated after it"
    )
