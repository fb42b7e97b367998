"""Fleet benchmark: 1, 2 and 4 worker processes on PostgreSQL share one workflow.

Each step models a per-process bottleneck without burning CPU: it waits 10 ms on a
process-wide ``asyncio.Semaphore(1)``, like one connection to a slow downstream service. One
process therefore runs at most ~100 steps/s whatever the number of roles it holds, and a
fleet is faster only if its roles spread over its processes. The workflow has 3 steps with
``parallel_count=4`` (12 step roles, plus the outbox and deletion roles).

For each fleet size it prints steps/s, the ratio to one process, the roles each process
held and the share of the steps each ran; then the targets (printed, never asserted):
2 processes >= 1.8x one, 4 >= 3x one, and at 4 no process runs more than 40 % of steps.

Usage: ``python bench/fleet.py [--dsn DSN] [--runs 1000] [--procs 1,2,4] [--parallel 4]
[--step-ms 10]``. The DSN defaults to ``LUNO_WF_TEST_POSTGRES_DSN`` or the local server on
127.0.0.1:5432. Each fleet gets a throwaway schema, dropped at the end. (``--worker`` runs
one process of a fleet; the benchmark starts them itself.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import attrs
from _three_steps import Job, Status
from luno_wf_postgres import (
    PostgresRecordStore,
    PostgresRoleScheduler,
    PostgresStreamer,
    migrate,
)
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import Builder, Run

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
WORKFLOW = "fleet"
SCRIPT = str(Path(__file__).resolve())

# -- one worker process -------------------------------------------------------------------


async def worker(dsn: str, schema: str, parallel: int, step_ms: float) -> None:
    """Run the workflow until told to stop; answer commands read from stdin.

    ``trigger N PREFIX`` triggers N runs (16 at a time) and answers ``triggered``;
    ``count`` answers ``steps <steps this process ran>``; ``stop`` (or end of input) stops.
    """
    downstream = asyncio.Semaphore(1)  # the per-process bottleneck
    steps = 0

    def step(to: Status) -> Callable[[Run[Job, Status]], Awaitable[Status]]:
        async def fn(r: Run[Job, Status]) -> Status:
            nonlocal steps
            async with downstream:
                await asyncio.sleep(step_ms / 1000)
            steps += 1
            return to

        return fn

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=2, max_size=16, open=False)
    await pool.open(wait=True)
    streamer = PostgresStreamer(pool, schema=schema, poll_frequency=timedelta(seconds=1))
    store = PostgresRecordStore(pool, schema=schema)
    scheduler = PostgresRoleScheduler(dsn, namespace=schema)
    b = Builder(WORKFLOW, Job, Status)
    for source, to in ((Status.CREATED, Status.FIRST), (Status.FIRST, Status.SECOND)):
        b.add_step(source, step(to), to, parallel_count=parallel)
    b.add_step(Status.SECOND, step(Status.DONE), Status.DONE, parallel_count=parallel)
    wf = b.build(streamer, store, scheduler, pause_retry=None)
    async with wf:
        print("ready", flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            command = line.split()
            if not command or command[0] == "stop":
                break
            if command[0] == "count":
                print(f"steps {steps}", flush=True)
            elif command[0] == "trigger":
                count, prefix = int(command[1]), command[2]
                sem = asyncio.Semaphore(16)

                async def trigger(
                    i: int, prefix: str = prefix, sem: asyncio.Semaphore = sem
                ) -> None:
                    async with sem:
                        await wf.trigger(f"{prefix}-{i}", initial_value=Job(n=i))

                await asyncio.gather(*(trigger(i) for i in range(count)))
                print("triggered", flush=True)
    await scheduler.close()
    await streamer.close()
    await store.close()
    await pool.close()


# -- the benchmark ------------------------------------------------------------------------


class Process:
    """A worker process, talked to through its stdin and stdout; its stderr goes to a file."""

    def __init__(self, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self.proc = proc
        self.log = log

    async def ask(self, command: str, expect: str, timeout: float = 60) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command:
            self.proc.stdin.write(f"{command}\n".encode())
            await self.proc.stdin.drain()
        line = (await asyncio.wait_for(self.proc.stdout.readline(), timeout)).decode().strip()
        if not line.startswith(expect):
            raise RuntimeError(
                f"worker {self.proc.pid} said {line!r}, expected {expect!r}; "
                f"its log:\n{self.tail()}"
            )
        return line

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    async def steps(self) -> int:
        return int((await self.ask("count", "steps")).split()[1])


@attrs.frozen
class Result:
    """What one fleet size did."""

    procs: int
    steps_per_s: float
    roles: list[int]
    shares: list[float]


LEASES = """
SELECT m.pid, count(*) FROM {s}.role_leases AS l
JOIN {s}.members AS m ON m.namespace = l.namespace AND m.member_id = l.member_id
WHERE l.namespace = %s AND l.expires_at > now() AND m.expires_at > now()
GROUP BY m.pid
"""


async def roles_held(pool: AsyncConnectionPool[Any], schema: str) -> dict[int, int]:
    """Roles held now (valid leases of live members), by process id."""
    async with pool.connection() as conn:
        cur = await conn.execute(sql.SQL(LEASES).format(s=sql.Identifier(schema)), (schema,))
        return {pid: count for pid, count in await cur.fetchall()}


async def settled(
    pool: AsyncConnectionPool[Any], schema: str, pids: list[int], roles: int
) -> list[int]:
    """Wait until the roles are held by ``pids`` within one of even, for a second."""
    stable_since = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        held = await roles_held(pool, schema)
        counts = [held.get(pid, 0) for pid in pids]
        ok = sum(counts) == roles and max(counts) - min(counts) <= 1
        if not ok:
            stable_since = None
        elif stable_since is None:
            stable_since = loop.time()
        elif loop.time() - stable_since >= 1:
            return counts
        if loop.time() > deadline:
            raise RuntimeError(f"the roles did not settle over {pids}: {held}")
        await asyncio.sleep(0.1)


async def count_done(pool: AsyncConnectionPool[Any], schema: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {}.records WHERE status = %s").format(
                sql.Identifier(schema)
            ),
            (int(Status.DONE),),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def until_done(pool: AsyncConnectionPool[Any], schema: str, runs: int) -> None:
    while True:
        if await count_done(pool, schema) >= runs:
            return
        await asyncio.sleep(0.01)


async def fleet(dsn: str, procs: int, runs: int, parallel: int, step_ms: float) -> Result:
    """Start ``procs`` workers on a fresh schema, run ``runs`` runs, measure, stop them."""
    schema = f"bench_fleet_{uuid.uuid4().hex[:10]}"
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False)
    await pool.open(wait=True)
    workers: list[Process] = []
    stack = contextlib.ExitStack()
    try:
        await migrate(pool, schema=schema)
        for _ in range(procs):
            log = stack.enter_context(tempfile.NamedTemporaryFile(prefix="bench-fleet-"))  # noqa: SIM115
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                SCRIPT,
                *("--worker", "--dsn", dsn, "--schema", schema),
                *("--parallel", str(parallel), "--step-ms", str(step_ms)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,  # role moves are logged as warnings: kept out of the figures
            )
            workers.append(Process(proc, log))
        for w in workers:
            await w.ask("", "ready")
        pids = [w.proc.pid for w in workers]
        roles = await settled(pool, schema, pids, 3 * parallel + 2)  # + outbox, deletion

        warm = 10 * procs
        await workers[0].ask(f"trigger {warm} warm", "triggered")
        await until_done(pool, schema, warm)
        before = [await w.steps() for w in workers]

        started = time.perf_counter()
        await workers[0].ask(f"trigger {runs} job", "triggered", timeout=600)
        await until_done(pool, schema, warm + runs)
        elapsed = time.perf_counter() - started

        ran = [await w.steps() - b for w, b in zip(workers, before, strict=True)]
        total = sum(ran) or 1
        return Result(procs, 3 * runs / elapsed, roles, [r / total for r in ran])
    finally:
        for w in workers:
            if w.proc.returncode is None and w.proc.stdin is not None:
                w.proc.stdin.write(b"stop\n")
        for w in workers:
            try:
                await asyncio.wait_for(w.proc.wait(), 30)
            except TimeoutError:
                w.proc.send_signal(signal.SIGKILL)
                await w.proc.wait()
        async with pool.connection() as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
        await pool.close()
        stack.close()


def report(results: list[Result], step_ms: float) -> None:
    one = results[0].steps_per_s if results and results[0].procs == 1 else None
    print(f"Fleet benchmark (PostgreSQL, each step {step_ms:g} ms behind a per-process lock)")
    for r in results:
        ratio = f"{r.steps_per_s / one:5.2f}x one process" if one else ""
        shares = ", ".join(f"{100 * s:.0f} %" for s in r.shares)
        print(
            f"  {r.procs} process{'es' if r.procs > 1 else '  '}: {r.steps_per_s:8,.0f} steps/s"
            f"  {ratio}  roles per process {r.roles}  steps per process [{shares}]"
        )
    by = {r.procs: r for r in results}
    if one is not None:
        targets = []
        if 2 in by:
            targets.append(f"2 processes >= 1.8x one (got {by[2].steps_per_s / one:.2f}x)")
        if 4 in by:
            targets.append(f"4 >= 3x one (got {by[4].steps_per_s / one:.2f}x)")
            targets.append(f"at 4 none > 40 % of steps (most {100 * max(by[4].shares):.0f} %)")
        if targets:
            print("  targets: " + "; ".join(targets))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", default=os.environ.get("LUNO_WF_TEST_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--runs", type=int, default=1000, help="runs measured per fleet size")
    parser.add_argument("--procs", default="1,2,4", help="fleet sizes, comma-separated")
    parser.add_argument("--parallel", type=int, default=4, help="parallel_count of each step")
    parser.add_argument("--step-ms", type=float, default=10, help="each step's wait")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--schema", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        await worker(args.dsn, args.schema, args.parallel, args.step_ms)
        return
    results = []
    for procs in (int(p) for p in args.procs.split(",")):
        results.append(await fleet(args.dsn, procs, args.runs, args.parallel, args.step_ms))
    report(results, args.step_ms)


if __name__ == "__main__":
    asyncio.run(main())
