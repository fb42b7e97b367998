"""Three worker processes run one workflow as a fleet on PostgreSQL.

Roles spread within one of even over the three; after a SIGKILL of one, its roles are held
by the other two within the documented handover time (lease + heartbeat); after a SIGSTOP
longer than the lease, the stopped worker's roles move and runs keep completing during the
stall; when it resumes, it finds it lost its roles (it logs "role lost"), and the audit of
every write shows no transition applied twice, and each run's history is exactly its
audited writes.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from tests.postgres.test_crash import (
    SETUP,
    Worker,
    assert_history_is_the_audit,
    poll_until,
    scalar,
    start,
    stop_all,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RUNS = 900
RATE = 45  # runs triggered per second: triggering lasts ~20 s, across both faults
HEARTBEAT = 0.5
LEASE = 2.0
# The documented bound on a dead or stalled member's roles reaching the others...
HANDOVER = LEASE + HEARTBEAT
# ...and the slack allowed on a loaded machine (process scheduling, a busy database).
SLACK = 10.0

LEASES = """
SELECT l.role, m.pid FROM {s}.role_leases AS l
JOIN {s}.members AS m ON m.namespace = l.namespace AND m.member_id = l.member_id
WHERE l.namespace = %s AND l.expires_at > now() AND m.expires_at > now()
"""


async def held(pool: AsyncConnectionPool[Any], schema: str) -> dict[str, int]:
    """Each role with a valid lease of a live member, and that member's pid."""
    async with pool.connection() as conn:
        cur = await conn.execute(sql.SQL(LEASES).format(s=sql.Identifier(schema)), (schema,))
        return {role: pid for role, pid in await cur.fetchall()}


async def all_roles(pool: AsyncConnectionPool[Any], schema: str) -> set[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT role FROM {}.role_leases WHERE namespace = %s").format(
                sql.Identifier(schema)
            ),
            (schema,),
        )
        return {role for (role,) in await cur.fetchall()}


def spread(holders: dict[str, int], roles: set[str], pids: list[int]) -> list[int] | None:
    """Roles per pid if every role is held by one of ``pids`` within one of even."""
    if set(holders) != roles or not set(holders.values()) <= set(pids):
        return None
    counts = [list(holders.values()).count(pid) for pid in pids]
    return counts if max(counts) - min(counts) <= 1 else None


async def settle(
    pool: AsyncConnectionPool[Any], schema: str, roles: set[str], pids: list[int], limit: float
) -> float:
    """Seconds until every role is held by ``pids`` within one of even."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def check() -> bool:
        return spread(await held(pool, schema), roles, pids) is not None

    try:
        await poll_until(check, limit, 0.05)
    except TimeoutError:
        raise AssertionError(
            f"roles not spread over {pids} within {limit}s: {await held(pool, schema)}"
        ) from None
    return loop.time() - started


async def test_roles_spread_move_on_death_and_stall_and_nothing_is_applied_twice(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str
) -> None:
    async with pg_pool.connection() as conn:
        await conn.execute(sql.SQL(SETUP).format(s=sql.Identifier(pg_schema)))
    timing = ("--heartbeat-ms", str(HEARTBEAT * 1000), "--lease-ms", str(LEASE * 1000))
    common = ("--work-ms", "5", "--parallel", "3", *timing)
    workers: list[Worker] = []
    try:
        for i in range(3):
            extra = ("--trigger", str(RUNS), "--rate", str(RATE)) if i == 2 else ()
            workers.append(await start(postgres_dsn, pg_schema, *common, *extra))
        for worker in workers:
            await worker.line("ready")
        doomed, stalled, survivor = workers
        pids = [w.proc.pid for w in workers]

        # 3 steps x 3 shards, the outbox, deletion and paused-run retries: 12 roles.
        # Every role seen so far: a role's lease row may come and go while roles move.
        roles: set[str] = set()

        async def every_role_known() -> bool:
            roles.update(await all_roles(pg_pool, pg_schema))
            return len(roles) >= 12

        await poll_until(every_role_known, 30, 0.1)
        await settle(pg_pool, pg_schema, roles, pids, 60)  # generous: three workers start at once
        counts = spread(await held(pg_pool, pg_schema), roles, pids)
        assert counts is not None and sorted(counts) == [4, 4, 4], counts

        # SIGKILL: the dead worker's roles go to the other two once its lease lapses.
        done_sql = "SELECT count(*) FROM {s}.records WHERE status = 4"
        doomed.proc.send_signal(signal.SIGKILL)
        await doomed.proc.wait()
        took = await settle(pg_pool, pg_schema, roles, pids[1:], HANDOVER + SLACK)
        print(f"\nfleet: a killed worker's roles held elsewhere after {took:.1f}s")

        # SIGSTOP past the lease: its roles move, and runs keep completing meanwhile.
        stalled.proc.send_signal(signal.SIGSTOP)
        try:
            took = await settle(pg_pool, pg_schema, roles, pids[2:], HANDOVER + SLACK)
            print(f"fleet: a stopped worker's roles held elsewhere after {took:.1f}s")
            done_before = await scalar(pg_pool, done_sql, pg_schema)

            async def progressed() -> bool:
                return bool(await scalar(pg_pool, done_sql, pg_schema) >= done_before + 20)

            await poll_until(progressed, 30, 0.1)
            await asyncio.sleep(LEASE)  # stopped for well over its lease
            log_at_resume = len(stalled.text())
        finally:
            stalled.proc.send_signal(signal.SIGCONT)

        # Awake, it finds its roles lost, and takes its share back.
        await settle(pg_pool, pg_schema, roles, pids[1:], 30)

        async def lost_logged() -> bool:
            return "role lost" in stalled.text()[log_at_resume:]

        await poll_until(lost_logged, 10, 0.1)

        await survivor.line("triggered", timeout=90)

        async def all_done() -> bool:
            return bool(await scalar(pg_pool, done_sql, pg_schema) >= RUNS)

        async def outbox_empty() -> bool:
            return not await scalar(pg_pool, "SELECT count(*) FROM {s}.outbox", pg_schema)

        await poll_until(all_done, 90, 0.1)
        await poll_until(outbox_empty, 30, 0.1)
    finally:
        await stop_all(*workers)

    await audit(pg_pool, pg_schema)
    await assert_history_is_the_audit(pg_pool, pg_schema, RUNS)


async def audit(pool: AsyncConnectionPool[Any], schema: str) -> None:
    """Every run completed once; each write one version after the last, never twice."""
    s = sql.Identifier(schema)
    async with pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT run_state, status, version, object FROM {}.records").format(s)
        )
        records = await cur.fetchall()
        assert len(records) == RUNS
        for run_state, status, version, obj in records:
            assert (run_state, status, version) == (5, 4, 4)
            assert json.loads(bytes(obj))["trail"] == [1, 2, 3]  # no step applied twice
        cur = await conn.execute(
            sql.SQL(
                "SELECT count(*) FILTER (WHERE old_version IS NULL AND new_version = 1), "
                "count(*) FILTER (WHERE new_version = old_version + 1), count(*), "
                "count(DISTINCT (run_id, new_version)) FROM {}.audit"
            ).format(s)
        )
        assert await cur.fetchone() == (RUNS, 3 * RUNS, 4 * RUNS, 4 * RUNS)
        cur = await conn.execute(
            sql.SQL(
                "SELECT count(DISTINCT (run_id, status, version)), "
                "count(*) FILTER (WHERE version <> status) FROM {}.effects"
            ).format(s)
        )
        assert await cur.fetchone() == (3 * RUNS, 0)
