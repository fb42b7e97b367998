"""Operator surface benchmark: the runs list, filtered by status, on many runs in PostgreSQL.

Fills a throwaway schema with ``--runs`` runs (100,000 by default) in one
``INSERT ... SELECT generate_series`` after ``migrate()``: three workflows, most runs
completed, some waiting, running, paused, cancelled or deleted, created over 30 days. Then
times, in ``--reps`` rounds that each run everything once in turn, and prints the median
and p95 of:

- the baseline: a plain ``SELECT <the listed columns> FROM records ORDER BY seq DESC
  LIMIT n`` on the same table, the cheapest page there is;
- ``OpsService.list_runs`` filtered by a common status (first page, and a deep keyset page
  with 90 % of the runs newer than it), by a rare status, by a status and run state, and
  by a status no run is at (the worst case: every run is read);
- the web UI's runs page for a status (``GET /runs?status=...`` through the ASGI app: its
  queries and rendering) and its overview (``GET /``: counts, stuck runs, lag);
- for scale, ``SELECT count(*)`` of the table: one pass over every run.

Each figure is also given as a multiple of the baseline, which holds on a busy machine.

Usage: ``python bench/ops.py [--dsn DSN] [--runs 100000] [--reps 25]``. The
DSN defaults to ``LUNO_WF_TEST_POSTGRES_DSN`` or the local server on 127.0.0.1:5432. The
schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import httpx2
from luno_wf_ops import OpsService, RunQuery, create_app
from luno_wf_ops._criteria import encode_cursor
from luno_wf_postgres import PostgresRecordStore, migrate
from psycopg import AsyncConnection, sql

from luno_wf import Builder, Run, RunState, Workflow
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PAGE = 50


class Status(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    AWAITING_PAYMENT = 2
    PAID = 3
    PACKED = 4
    SHIPPED = 5
    DELIVERED = 6


@attrs.define
class Order:
    id: str = ""
    amount: int = 0


async def _step(r: Run[Order, Status]) -> Status:
    return Status.DELIVERED


def catalog(name: str) -> Workflow[Order, Status]:
    """A built workflow named ``name`` over ``Status``: loaded in the UI as an app would."""
    b = Builder(name, Order, Status)
    b.add_step(Status.CREATED, _step, Status.AWAITING_PAYMENT)
    b.add_step(Status.AWAITING_PAYMENT, _step, Status.PAID)
    b.add_step(Status.PAID, _step, Status.PACKED)
    b.add_step(Status.PACKED, _step, Status.SHIPPED)
    b.add_step(Status.SHIPPED, _step, Status.DELIVERED)
    return b.build(MemStreamer(), MemRecordStore(), MemRoleScheduler())


# Where runs are, as shares of all runs: (up to this share, status, run state, reason).
SPREAD: list[tuple[float, Status, RunState, str]] = [
    (0.800, Status.DELIVERED, RunState.COMPLETED, ""),
    (0.860, Status.AWAITING_PAYMENT, RunState.RUNNING, ""),
    (0.890, Status.SHIPPED, RunState.RUNNING, ""),
    (0.910, Status.PACKED, RunState.RUNNING, ""),
    (0.920, Status.PAID, RunState.RUNNING, ""),
    (0.925, Status.CREATED, RunState.INITIATED, ""),
    (0.955, Status.AWAITING_PAYMENT, RunState.CANCELLED, "payment never came"),
    (0.975, Status.PAID, RunState.PAUSED, "fraud check"),
    (0.985, Status.AWAITING_PAYMENT, RunState.DATA_DELETED, "customer asked"),
    (1.000, Status.SHIPPED, RunState.CANCELLED, "lost in transit"),
]
WORKFLOWS = [(0.6, "orders"), (0.9, "payments"), (1.0, "refunds")]

FILL = """
WITH spread(hi, status, description, run_state, reason) AS (VALUES {spread}),
workflows(hi, name) AS (VALUES {workflows}),
drawn AS (
    SELECT g, random() AS u, random() AS w, random() AS late FROM generate_series(1, %(n)s) AS g
)
INSERT INTO {s}.records (run_id, workflow_name, foreign_id, run_state, status, object,
                         created_at, updated_at, version, meta)
SELECT
    md5(g::text || %(salt)s)::uuid::text,
    wf.name,
    wf.name || '-' || g,
    sp.run_state,
    sp.status,
    convert_to('{{"id":"' || wf.name || '-' || g || '","amount":' || (g %% 997) || '}}', 'UTF8'),
    created,
    created + late * interval '6 hours',
    sp.status + 1,
    jsonb_build_object(
        'RunStateReason', sp.reason, 'StatusDescription', sp.description,
        'Version', sp.status + 1, 'TraceOrigin', '', 'Actor', 'step:' || sp.description,
        'Error', '', 'TraceID', '')
FROM drawn
CROSS JOIN LATERAL (SELECT now() - interval '30 days' * (1 - g::float8 / %(n)s) AS created) AS c
CROSS JOIN LATERAL (SELECT * FROM spread WHERE spread.hi >= drawn.u ORDER BY hi LIMIT 1) AS sp
CROSS JOIN LATERAL (SELECT * FROM workflows WHERE workflows.hi >= drawn.w ORDER BY hi LIMIT 1) AS wf
ORDER BY g
"""


def _values(rows: list[tuple[Any, ...]]) -> str:
    def literal(value: Any) -> str:
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        return str(float(value) if isinstance(value, float) else int(value))

    return ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)


async def fill(dsn: str, schema: str, runs: int) -> float:
    """Insert ``runs`` runs in one statement; the seconds it took (with ANALYZE)."""
    spread = [(hi, int(st), st.name, int(rs), why) for hi, st, rs, why in SPREAD]
    template = FILL.replace("{spread}", _values(spread)).replace("{workflows}", _values(WORKFLOWS))
    started = time.perf_counter()
    async with await AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT setseed(0.42)")
        await conn.execute(
            sql.SQL(template).format(s=sql.Identifier(schema)), {"n": runs, "salt": schema}
        )
        await conn.execute(sql.SQL("ANALYZE {}.records").format(sql.Identifier(schema)))
    return time.perf_counter() - started


@attrs.frozen
class Timing:
    label: str
    median_ms: float
    p95_ms: float


async def timed(reps: int, works: list[tuple[str, Callable[[], Awaitable[Any]]]]) -> list[Timing]:
    """Each work's median and p95 in ms, over ``reps`` rounds after a warm-up round.

    Each round runs every work once, in turn, so a burst of load on the machine slows them
    all alike and the ratios to the baseline hold.
    """
    samples: dict[str, list[float]] = {label: [] for label, _ in works}
    for round_ in range(reps + 1):
        for label, work in works:
            started = time.perf_counter()
            await work()
            if round_:
                samples[label].append((time.perf_counter() - started) * 1000)
    timings = []
    for label, taken in samples.items():
        taken.sort()
        p95 = taken[min(len(taken) - 1, round(0.95 * (len(taken) - 1)))]
        timings.append(Timing(label, statistics.median(taken), p95))
    return timings


async def measure(dsn: str, schema: str, reps: int, runs: int) -> list[Timing]:
    """Every timing, the baseline first."""
    store = PostgresRecordStore(dsn, schema=schema, pool_kwargs={"min_size": 2, "max_size": 4})
    loaded = [catalog(name) for _, name in WORKFLOWS]
    service = OpsService(store, workflows=loaded)
    client = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(create_app(service)), base_url="http://b"
    )
    s = sql.Identifier(schema)
    try:
        async with store._conns.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT seq FROM {}.records ORDER BY seq OFFSET %s LIMIT 1").format(s),
                [runs // 10],
            )
            row = await cur.fetchone()
        deep = encode_cursor(row[0] if row else 1)  # 90 % of the runs are newer than it

        baseline_query = sql.SQL(
            "SELECT seq, workflow_name, foreign_id, run_id, status, "
            "coalesce(meta->>'StatusDescription', ''), run_state, version, created_at, "
            "updated_at, coalesce(meta->>'RunStateReason', '') "
            "FROM {}.records ORDER BY seq DESC LIMIT %s"
        ).format(s)

        async def baseline() -> None:
            async with store._conns.connection() as conn:
                cur = await conn.execute(baseline_query, [PAGE + 1])
                await cur.fetchall()

        waiting = RunQuery(statuses=("AWAITING_PAYMENT",))
        rare = RunQuery(statuses=("CREATED",))
        nowhere = RunQuery(statuses=("UNKNOWN",))
        paused = RunQuery(statuses=("PAID",), run_states=(RunState.PAUSED,))

        async def list_runs(query: RunQuery, cursor: str | None = None) -> None:
            await service.list_runs(query, cursor=cursor, limit=PAGE)

        async def runs_page() -> None:
            answer = await client.get("/runs", params={"status": "AWAITING_PAYMENT"})
            assert answer.status_code == 200, answer.text[:500]

        async def overview_page() -> None:
            answer = await client.get("/")
            assert answer.status_code == 200, answer.text[:500]

        count_query = sql.SQL("SELECT count(*) FROM {}.records").format(s)

        async def one_pass() -> None:
            async with store._conns.connection() as conn:
                await (await conn.execute(count_query)).fetchall()

        return await timed(
            reps,
            [
                ("baseline: ORDER BY seq DESC LIMIT 51", baseline),
                ("status AWAITING_PAYMENT (10 %), first page", lambda: list_runs(waiting)),
                ("status AWAITING_PAYMENT (10 %), deep page", lambda: list_runs(waiting, deep)),
                ("status CREATED (0.5 %), first page", lambda: list_runs(rare)),
                ("status CREATED (0.5 %), deep page", lambda: list_runs(rare, deep)),
                ("status PAID and run state PAUSED (2 %)", lambda: list_runs(paused)),
                ("status UNKNOWN (no run: reads all)", lambda: list_runs(nowhere)),
                ("web: GET /runs?status=AWAITING_PAYMENT", runs_page),
                ("web: GET / (overview)", overview_page),
                ("reference: SELECT count(*), one pass", one_pass),
            ],
        )
    finally:
        await client.aclose()
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", default=os.environ.get("LUNO_WF_TEST_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=25)
    args = parser.parse_args()
    schema = f"bench_ops_{uuid.uuid4().hex[:12]}"
    try:
        await migrate(args.dsn, schema=schema)
        seconds = await fill(args.dsn, schema, args.runs)
        timings = await measure(args.dsn, schema, args.reps, args.runs)
    finally:
        async with await AsyncConnection.connect(args.dsn, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(
        f"{args.runs:,} runs inserted in {seconds:.1f} s; {args.reps} rounds "
        f"(load average {load} on {os.cpu_count()} CPUs)"
    )
    print(f"  {'':44} {'median':>9} {'p95':>9}  {'median / baseline':>17}")
    base = timings[0].median_ms
    for t in timings:
        ratio = t.median_ms / base if base else 0.0
        print(f"  {t.label:44} {t.median_ms:6.1f} ms {t.p95_ms:6.1f} ms  {ratio:16.1f}x")
    slowest = max(t.p95_ms for t in timings[1:8])
    print(f"slowest runs list p95: {slowest:.1f} ms (target: under 200 ms)")


if __name__ == "__main__":
    asyncio.run(main())
