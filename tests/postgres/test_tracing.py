"""A run is one trace across two OS processes: triggered in one, stepped in the other.

Both processes are ``tests.worker`` with an SDK provider writing spans to a file. Worker A
runs the workflow (the fleet's only member: every role); worker B only triggers the runs.
So every trigger span is made in B and every step span in A, which finds the trace context
in the event headers (PostgreSQL events here, Kafka in ``tests/kafka/test_tracing.py``)
and in the record.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from .test_crash import Worker, poll_until, scalar, start, stop_all

pytestmark = pytest.mark.postgres

RUNS = 20
EFFECTS = """
CREATE TABLE {s}.effects (run_id text NOT NULL, status bigint NOT NULL,
                          version bigint NOT NULL, pid integer NOT NULL);
"""
STEPS = ["CREATED", "FIRST", "SECOND"]
NEXT = {"CREATED": "FIRST", "FIRST": "SECOND", "SECOND": "DONE"}


def read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_one_trace_per_run(
    triggered: list[dict[str, Any]], stepped: list[dict[str, Any]], workflow: str
) -> None:
    """Each run: a trigger span in B, and three step spans in A, children of it."""
    triggers = {span["attributes"]["luno_wf.run_id"]: span for span in triggered}
    assert len(triggers) == RUNS
    assert all(span["name"] == f"trigger {workflow} CREATED" for span in triggered)
    steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in stepped:
        steps[span["attributes"]["luno_wf.run_id"]].append(span)
    assert steps.keys() == triggers.keys()
    for run_id, trigger in triggers.items():
        assert trigger["parent_id"] == ""
        assert sorted(span["attributes"]["luno_wf.status"] for span in steps[run_id]) == sorted(
            STEPS
        )
        for span in steps[run_id]:
            status = span["attributes"]["luno_wf.status"]
            assert span["name"] == f"step {workflow} {status}"
            assert span["trace_id"] == trigger["trace_id"]
            assert span["parent_id"] == trigger["span_id"]
            assert span["status"] == "UNSET"
            attributes = span["attributes"]
            assert attributes["luno_wf.workflow"] == workflow
            assert attributes["luno_wf.foreign_id"] == trigger["attributes"]["luno_wf.foreign_id"]
            assert attributes["luno_wf.version"] == STEPS.index(status) + 1
            assert attributes["luno_wf.next_status"] == NEXT[status]


async def run_two_workers(
    pg_pool: AsyncConnectionPool[Any],
    dsn: str,
    schema: str,
    spans: Path,
    *options: str,
    workflow: str = "crash-test",
) -> None:
    """Worker A (every role) steps the runs worker B only triggers; both write their spans."""
    async with pg_pool.connection() as conn:
        await conn.execute(sql.SQL(EFFECTS).format(s=sql.Identifier(schema)))
    common = (dsn, schema, *options, "--workflow", workflow)
    a = await start(*common, "--spans", str(spans / "a.jsonl"))
    b: Worker | None = None
    try:
        await a.line("ready", timeout=60)
        b = await start(
            *common, "--trigger-only", "--trigger", str(RUNS), "--spans", str(spans / "b.jsonl")
        )
        await b.line("ready", timeout=60)
        await b.line("triggered", timeout=60)
        done = "SELECT count(*) FROM {s}.records WHERE status = 4"

        async def all_done() -> bool:
            return bool(await scalar(pg_pool, done, schema) == RUNS)

        await poll_until(all_done, 60, 0.05)
    finally:
        await stop_all(a, b)
    pids = await scalar(pg_pool, "SELECT count(DISTINCT pid) FROM {s}.effects", schema)
    assert pids == 1, "worker A should have made every step"


async def test_a_run_is_one_trace_across_two_processes_on_postgres(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str, postgres_dsn: str, tmp_path: Path
) -> None:
    await run_two_workers(pg_pool, postgres_dsn, pg_schema, tmp_path)
    check_one_trace_per_run(
        read_spans(tmp_path / "b.jsonl"), read_spans(tmp_path / "a.jsonl"), "crash-test"
    )
