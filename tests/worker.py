"""One worker process of the two-worker crash tests: a 3-step workflow, until SIGTERM.

Usage: ``python -m tests.worker DSN SCHEMA [--kafka SERVERS] [--workflow NAME]
[--trigger N] [--rate R] [--prefix P] [--work-ms MS] [--parallel N] [--heartbeat-ms MS]
[--lease-ms MS] [--spans FILE] [--trigger-only]``. Records and roles are on PostgreSQL;
events too, unless ``--kafka`` names a broker. Prints ``ready`` once its workflow runs and
``triggered`` after triggering N runs (foreign ids ``P-0`` ... ``P-(N-1)``; ``--rate`` per
second, or all at once). Every step records its side effect (run id, status, the version it
read, this pid) in ``SCHEMA.effects`` before returning, then works for ``--work-ms`` (so
that a kill lands mid-way). Each step has ``--parallel`` shards (roles); the role
scheduler's heartbeat and lease are its defaults unless given. With ``--spans`` an
OpenTelemetry SDK provider is set globally and every span is appended to FILE as a JSON
line. With ``--trigger-only`` the workflow is not run here (no roles, no steps): the
process only triggers.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import os
import signal
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import attrs
from luno_wf_kafka import KafkaStreamer
from luno_wf_postgres import PostgresRecordStore, PostgresRoleScheduler, PostgresStreamer
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import Builder, Run, Workflow


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


def step(pool: AsyncConnectionPool[Any], schema: str, to: Status, work: float) -> Any:
    insert = sql.SQL(
        "INSERT INTO {}.effects (run_id, status, version, pid) VALUES (%s, %s, %s, %s)"
    ).format(sql.Identifier(schema))

    async def fn(r: Run[Job, Status]) -> Status:
        async with pool.connection() as conn:
            await conn.execute(insert, (r.run_id, int(r.status), r.meta.version, os.getpid()))
        r.object.trail.append(int(r.status))
        if work:
            await asyncio.sleep(work)
        return to

    return fn


class JsonLinesExporter(SpanExporter):
    """Appends each span to a file as one JSON line (ids in hex, as in a traceparent)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a")  # noqa: SIM115 - closed by shutdown()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            context = span.get_span_context()
            assert context is not None
            line = {
                "name": span.name,
                "trace_id": f"{context.trace_id:032x}",
                "span_id": f"{context.span_id:016x}",
                "parent_id": f"{span.parent.span_id:016x}" if span.parent else "",
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name,
                "pid": os.getpid(),
            }
            self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


def trace_to(path: str) -> TracerProvider:
    """Set a global SDK provider writing every span to ``path``, as an application would."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    trace.set_tracer_provider(provider)
    return provider


def streamer_for(
    args: argparse.Namespace, pool: AsyncConnectionPool[Any]
) -> KafkaStreamer | PostgresStreamer:
    if args.kafka:
        # Test-only consumer settings for the Tansu broker (see tests/fixtures/kafka.py).
        return KafkaStreamer(
            args.kafka,
            consumer_options={
                "session_timeout_ms": 1000,
                "heartbeat_interval_ms": 300,
                "fetch_max_wait_ms": 10,
            },
        )
    return PostgresStreamer(
        pool,
        schema=args.schema,
        # The default claim lease (30 s): a dead worker's events are taken over because
        # its server sessions end, not because their lease lapses.
        poll_frequency=timedelta(milliseconds=250),
    )


async def trigger_runs(wf: Workflow[Job, Status], args: argparse.Namespace) -> None:
    """Trigger ``--trigger`` runs (at ``--rate`` per second, or all at once)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(args.trigger):
        if args.rate:
            await asyncio.sleep(max(0.0, started + i / args.rate - loop.time()))
        await wf.trigger(f"{args.prefix}-{i}", initial_value=Job(n=i))
    if args.trigger:
        print("triggered", flush=True)


async def main(args: argparse.Namespace) -> None:
    dsn, schema = args.dsn, args.schema
    provider = trace_to(args.spans) if args.spans else None
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=2, max_size=12, open=False)
    await pool.open(wait=True)
    streamer = streamer_for(args, pool)
    timings: dict[str, Any] = {}
    if args.heartbeat_ms:
        timings["heartbeat_interval"] = timedelta(milliseconds=args.heartbeat_ms)
    if args.lease_ms:
        timings["lease_duration"] = timedelta(milliseconds=args.lease_ms)
    scheduler = PostgresRoleScheduler(
        dsn, namespace=schema, poll_interval=timedelta(milliseconds=100), **timings
    )
    work = args.work_ms / 1000
    b = Builder(args.workflow, Job, Status)
    for source, to in zip(list(Status)[1:4], list(Status)[2:], strict=True):
        b.add_step(source, step(pool, schema, to, work), to, parallel_count=args.parallel)
    wf = b.build(streamer, PostgresRecordStore(pool, schema=schema), scheduler)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if args.trigger_only:  # not a member of the fleet: its API verbs only
        print("ready", flush=True)
        await trigger_runs(wf, args)
        await stop.wait()
    else:
        async with wf:
            print("ready", flush=True)
            await trigger_runs(wf, args)
            await stop.wait()
    await scheduler.close()
    await streamer.close()
    await pool.close()
    if provider is not None:
        provider.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("--kafka", default="")
    parser.add_argument("--workflow", default="crash-test")
    parser.add_argument("--trigger", type=int, default=0)
    parser.add_argument("--prefix", default="job")
    parser.add_argument("--work-ms", type=float, default=0)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--heartbeat-ms", type=float, default=0)
    parser.add_argument("--lease-ms", type=float, default=0)
    parser.add_argument("--spans", default="")
    parser.add_argument("--trigger-only", action="store_true")
    asyncio.run(main(parser.parse_args()))
