"""PostgreSQL benchmark: the database's own one-statement step rate beside luno_wf's.

Prints, in one run:

(a) the ceiling: a step written as one statement (a versioned UPDATE of a run row feeding
    the INSERT of its outbox row), on one connection, N times;
(b) luno_wf's 3-step workflow on PostgreSQL only, built as a newcomer builds it: each
    adapter given the DSN and nothing else, ``build()`` with no options (history on, the
    record store writing events straight to the streamer's table): steps/s with 1,000 runs
    in flight and its ratio to (a), trigger-to-complete p50/p99 of single runs triggered one
    at a time, and the CPU this process spent per step in each phase;
(c) the same with the outbox (``PostgresRecordStore(..., direct_events=False)``), as with
    any other streamer;
(d) with ``--parallel``, ``--concurrency`` or ``--pool``, (b) with those options;
(e) (b) with history off (``build(history=False)``), so the cost of history shows beside it.

Usage: ``python bench/postgres.py [--dsn DSN] [--runs 1000] [--single 200]``. The DSN
defaults to ``LUNO_WF_TEST_POSTGRES_DSN`` or the local server on 127.0.0.1:5432. Each
measurement goes in a throwaway schema of its own, dropped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from _three_steps import Job, Rates, Status, build, measure
from luno_wf_postgres import (
    PostgresReceiver,
    PostgresRecordStore,
    PostgresRoleScheduler,
    PostgresSender,
    PostgresStreamer,
    migrate,
)
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from luno_wf import Meta, Record, RunState, make_outbox_event

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


# -- (a) the database's ceiling ---------------------------------------------------------

CEILING_STEP = """
WITH upd AS (
    UPDATE {s}.records SET status = %(status)s, object = %(object)s, updated_at = %(now)s,
        version = %(version)s, meta = %(meta)s
    WHERE run_id = %(run_id)s AND version = %(prev)s
    RETURNING 1
), out AS (
    INSERT INTO {s}.outbox (id, workflow_name, data, created_at)
    SELECT %(outbox_id)s, 'ceiling', %(data)s, %(now)s FROM upd
)
SELECT count(*) FROM upd"""


async def ceiling(dsn: str, schema: str, n: int) -> float:
    """Steps per second of the one-statement step on one connection."""
    now = datetime.now(UTC)
    record = Record(
        workflow_name="ceiling",
        foreign_id="ceiling",
        run_id=str(uuid.uuid4()),
        run_state=RunState.RUNNING,
        status=1,
        object=b'{"n": 0, "note": "first"}',
        created_at=now,
        updated_at=now,
        meta=Meta(version=1),
    )
    async with await AsyncConnection.connect(dsn, autocommit=True) as conn:
        s = sql.Identifier(schema)
        await conn.execute(
            sql.SQL(
                "INSERT INTO {}.records (run_id, workflow_name, foreign_id, run_state, status, "
                "object, created_at, updated_at, version, meta) "
                "VALUES (%s, 'ceiling', 'ceiling', 2, 1, %s, %s, %s, 1, '{{}}')"
            ).format(s),
            (record.run_id, record.object, now, now),
        )
        query = sql.SQL(CEILING_STEP).format(s=s).as_bytes(conn)
        started = time.perf_counter()
        for version in range(2, n + 2):
            outbox_id, data = make_outbox_event(record)
            cur = await conn.execute(
                query,
                {
                    "status": version % 3 + 1,
                    "object": record.object,
                    "now": now,
                    "version": version,
                    "prev": version - 1,
                    "meta": Jsonb({"Version": version}),
                    "run_id": record.run_id,
                    "outbox_id": outbox_id,
                    "data": data,
                },
            )
            row = await cur.fetchone()
            assert row == (1,)
        elapsed = time.perf_counter() - started
    return n / elapsed


# -- (b), (c), (d) luno_wf on PostgreSQL ------------------------------------------------

Adapters = tuple[PostgresStreamer, PostgresRecordStore]


@asynccontextmanager
async def default_adapters(
    dsn: str, schema: str, *, direct: bool = True
) -> AsyncIterator[Adapters]:
    """The streamer and store as a newcomer makes them: from the DSN, nothing else."""
    streamer = PostgresStreamer(dsn, schema=schema)
    store = (
        PostgresRecordStore(dsn, schema=schema)
        if direct
        else PostgresRecordStore(dsn, schema=schema, direct_events=False)
    )
    try:
        yield streamer, store
    finally:
        await streamer.close()
        await store.close()


@asynccontextmanager
async def pooled_adapters(dsn: str, schema: str, size: int) -> AsyncIterator[Adapters]:
    """The streamer and store sharing one pool of ``size`` connections."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=size, max_size=size, open=False
    )
    await pool.open(wait=True)
    streamer = PostgresStreamer(pool, schema=schema)
    store = PostgresRecordStore(pool, schema=schema)
    try:
        yield streamer, store
    finally:
        await streamer.close()
        await store.close()
        await pool.close()


async def workflow_rates(
    dsn: str,
    schema: str,
    runs: int,
    single: int,
    adapters: Callable[[], Any] | None = None,
    build_options: dict[str, Any] | None = None,
    **options: Any,
) -> Rates:
    """Steps/s with ``runs`` in flight, and trigger-to-complete p50/p99 of single runs.

    ``adapters`` makes the streamer and store (default: :func:`default_adapters`);
    ``options`` go to every step.
    """
    make = adapters or (lambda: default_adapters(dsn, schema))
    name = f"bench-{uuid.uuid4().hex[:8]}"
    query = sql.SQL(
        "SELECT count(*) FROM {}.records WHERE workflow_name = %s AND status = 4"
    ).format(sql.Identifier(schema))
    async with (
        make() as (streamer, store),
        await AsyncConnection.connect(dsn, autocommit=True) as counting,
    ):

        async def count_done() -> int:
            row = await (await counting.execute(query, (name,))).fetchone()
            return int(row[0]) if row else 0

        scheduler = PostgresRoleScheduler(dsn, namespace=schema)
        wf = build(name, streamer, store, scheduler, build_options, **options)
        try:
            return await measure(wf, count_done, runs, single, poll=0.002)
        finally:
            await scheduler.close()


# -- where the time goes ------------------------------------------------------------------

_CALLS = (
    (
        PostgresRecordStore,
        (
            "store",
            "store_many",
            "lookup",
            "lookup_many",
            "list_outbox_events",
            "delete_outbox_events",
        ),
    ),
    (PostgresSender, ("send_many",)),
    (PostgresReceiver, ("_claim",)),
)


def _instrument() -> tuple[Counter[str], defaultdict[str, float]]:
    """Count and time every adapter call (wrapping the classes' methods)."""
    calls: Counter[str] = Counter()
    spent: defaultdict[str, float] = defaultdict(float)
    for cls, names in _CALLS:
        for name in names:
            original = getattr(cls, name)

            def wrapper(original: Any = original, key: str = f"{cls.__name__}.{name}") -> Any:
                async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
                    calls[key] += 1
                    started = time.perf_counter()
                    try:
                        return await original(self, *args, **kwargs)
                    finally:
                        spent[key] += time.perf_counter() - started

                return timed

            setattr(cls, name, wrapper())
    return calls, spent


async def explain(dsn: str, schema: str, runs: int) -> list[str]:
    """Adapter calls per run of single runs (default build), their mean time, CPU per run."""
    calls, spent = _instrument()
    async with default_adapters(dsn, schema) as (streamer, store):
        wf = build("explain", streamer, store, PostgresRoleScheduler(dsn, namespace=schema))
        async with wf:
            for i in range(10):
                run_id = await wf.trigger(f"warm-{i}", initial_value=Job(n=i))
                await wf.await_status(f"warm-{i}", run_id, Status.DONE)
            calls.clear()
            spent.clear()
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(runs):
                run_id = await wf.trigger(f"explain-{i}", initial_value=Job(n=i))
                await wf.await_status(f"explain-{i}", run_id, Status.DONE)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    lines = [
        f"  where a single run's time goes ((b), {runs} runs, one at a time):",
        f"      {1000 * wall / runs:6.1f} ms wall, {1000 * cpu / runs:6.1f} ms CPU of this process",
    ]
    for key in sorted(calls):
        lines.append(
            f"      {calls[key] / runs:5.2f} calls/run  {1000 * spent[key] / calls[key]:6.2f} ms"
            f" mean  {key}"
        )
    return lines


def report(label: str, rates: Rates, top: float, runs: int, single: int) -> list[str]:
    """The lines that describe one measurement, its ratio to the ceiling ``top`` beside it."""
    return [
        f"  {label}",
        f"      {rates.steps_per_s:10,.0f} steps/s with {runs} runs in flight "
        f"({rates.steps_per_s / top:.2f} of (a)); triggers {rates.triggers_per_s:,.0f}/s; "
        f"CPU {1000 * rates.cpu_ms_per_step:.0f} us/step",
        f"      trigger-to-complete, one run at a time ({single} runs): "
        f"p50 {rates.p50_ms:.1f} ms, p99 {rates.p99_ms:.1f} ms; "
        f"CPU {1000 * rates.single_cpu_ms_per_step:.0f} us/step",
    ]


@asynccontextmanager
async def fresh_schema(dsn: str) -> AsyncIterator[str]:
    """A throwaway schema, migrated, dropped after the block."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    await migrate(dsn, schema=schema)
    try:
        yield schema
    finally:
        async with await AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


async def measurements(
    args: argparse.Namespace,
) -> tuple[float, list[tuple[str, Rates]], list[str]]:
    """(a), then (b), (c), (e) and (d) as asked, then the explanation if asked.

    Each on tables of its own, so that none runs on what an earlier one left behind.
    """
    dsn, runs, single = args.dsn, args.runs, args.single
    async with fresh_schema(dsn) as schema:
        top = await ceiling(dsn, schema, args.ceiling_steps)
    found = []
    async with fresh_schema(dsn) as schema:
        found.append(
            (
                "(b) luno_wf 3-step workflow, PostgreSQL only, default build (DSN, no options)",
                await workflow_rates(dsn, schema, runs, single),
            )
        )
    if not args.no_outbox:
        async with fresh_schema(dsn) as schema:
            outbox = await workflow_rates(
                dsn, schema, runs, single, lambda: default_adapters(dsn, schema, direct=False)
            )
        found.append(("(c) the same, events through the outbox (direct_events=False)", outbox))
    if not args.no_history_off:
        async with fresh_schema(dsn) as schema:
            off = await workflow_rates(dsn, schema, runs, single, build_options={"history": False})
        found.append(("(e) the same as (b) with history off (build(history=False))", off))
    options = {
        key: value
        for key, value in (("parallel_count", args.parallel), ("concurrency", args.concurrency))
        if value is not None
    }
    if options or args.pool:
        shown = ", ".join([*(f"{k}={v}" for k, v in options.items()), f"pool={args.pool}"])
        async with fresh_schema(dsn) as schema:
            adapters: Callable[[], Any] | None = (
                (lambda: pooled_adapters(dsn, schema, args.pool)) if args.pool else None
            )
            tuned = await workflow_rates(dsn, schema, runs, single, adapters, **options)
        found.append((f"(d) the same as (b) with {shown}", tuned))
    explained: list[str] = []
    if args.explain:
        async with fresh_schema(dsn) as schema:
            explained = await explain(dsn, schema, 50)
    return top, found, explained


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", default=os.environ.get("LUNO_WF_TEST_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--ceiling-steps", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--parallel", type=int, help="(d): parallel_count of each step")
    parser.add_argument("--concurrency", type=int, help="(d): runs a step consumer handles at once")
    parser.add_argument("--pool", type=int, help="(d): one pool of this size for both adapters")
    parser.add_argument("--no-outbox", action="store_true", help="skip (c)")
    parser.add_argument("--no-history-off", action="store_true", help="skip (e)")
    parser.add_argument(
        "--explain", action="store_true", help="also count and time adapter calls per run"
    )
    args = parser.parse_args()

    top, found, explained = await measurements(args)

    print(f"PostgreSQL benchmark (one machine, loopback, {os.cpu_count()} cores)")
    print(f"  (a) one-statement step, 1 connection, {args.ceiling_steps} steps")
    print(f"      {top:10,.0f} steps/s")
    for label, rates in found:
        for line in report(label, rates, top, args.runs, args.single):
            print(line)
    for line in explained:
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
