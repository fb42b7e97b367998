"""The ``luno-wf`` command line against PostgreSQL, through click's CliRunner."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from click.testing import CliRunner, Result
from luno_wf_ops.cli import EXIT, cli
from luno_wf_postgres import PostgresRecordStore, migrate
from psycopg import sql

from luno_wf import Record, RunState

from .support import OrderStatus, put, record, seed

pytestmark = pytest.mark.postgres


@attrs.frozen
class Db:
    dsn: str
    schema: str

    def run(self, *args: str, app: bool = False) -> Result:
        options = ["--dsn", self.dsn, "--schema", self.schema, "--operator", "ann"]
        if app:
            options += ["--app", "tests.ops.app:workflows"]
        return CliRunner().invoke(cli, [*options, *args], catch_exceptions=False)

    def json(self, *args: str, app: bool = False) -> Any:
        result = self.run("-o", "json", *args, app=app)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def put(self, *records: Record) -> list[Record]:
        async def main() -> list[Record]:
            async with PostgresRecordStore(self.dsn, schema=self.schema) as store:
                return await put(store, *records)

        return asyncio.run(main())

    def seed(self, count: int = 6) -> list[Record]:
        async def main() -> list[Record]:
            async with PostgresRecordStore(self.dsn, schema=self.schema) as store:
                return await seed(store, count)

        return asyncio.run(main())


@pytest.fixture
def db(postgres_dsn: str, pg_schema: str) -> Db:
    asyncio.run(migrate(postgres_dsn, schema=pg_schema))
    return Db(postgres_dsn, pg_schema)


def one_line_error(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("luno-wf: ")
    return lines[0]


def test_runs_list_json_rows(db: Db) -> None:
    db.seed(3)
    rows = db.json("runs", "list")
    assert [r["foreign_id"] for r in rows] == ["order-2", "order-1", "order-0"]
    for key in ("workflow_name", "run_id", "status", "run_state", "version", "created_at"):
        assert key in rows[0]
    assert (rows[1]["status"], rows[1]["run_state"], rows[1]["version"]) == ("PAID", "PAUSED", 1)
    assert rows[0]["updated_at"].startswith("2024-05-01T12:02:00")


def test_runs_list_filters_and_pages(db: Db) -> None:
    db.seed(6)
    paused = db.json("runs", "list", "--status", "paid", "--run-state", "paused")
    assert [r["foreign_id"] for r in paused] == ["order-5", "order-3", "order-1"]
    assert db.json("runs", "list", "--foreign-id", "order-2")[0]["foreign_id"] == "order-2"
    older = db.json("runs", "list", "--created-before", "2024-05-01T12:02:00")
    assert [r["foreign_id"] for r in older] == ["order-1", "order-0"]
    first = db.run("runs", "list", "--limit", "4")
    assert first.exit_code == 0
    assert "order-5" in first.stdout and "order-1" not in first.stdout
    cursor = first.stderr.strip().removeprefix("more: --cursor ")
    rest = db.json("runs", "list", "--limit", "4", "--cursor", cursor)
    assert [r["foreign_id"] for r in rest] == ["order-1", "order-0"]


def test_runs_list_jsonl_and_table(db: Db) -> None:
    db.seed(2)
    result = db.run("-o", "jsonl", "runs", "list")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["foreign_id"] for line in lines] == ["order-1", "order-0"]
    table = db.run("runs", "list")
    assert table.stdout.splitlines()[0].split()[:3] == ["WORKFLOW", "FOREIGN", "ID"]
    assert "AWAITING_PAYMENT" in table.stdout


def test_runs_show_decodes_with_the_app(db: Db) -> None:
    (run,) = db.put(record("order-1"))
    raw = db.json("runs", "show", run.run_id)
    assert raw["object"] == {"id": "order-1", "amount": 100}
    assert raw["object_type"] == ""
    assert raw["can"] == ["pause", "cancel"]
    typed = db.json("runs", "show", run.run_id, app=True)
    assert typed["object_type"] == "Order"
    assert typed["next_statuses"] == ["PAID"]
    text = db.run("runs", "show", run.run_id, app=True)
    assert "leads to" in text.stdout and '"amount": 100' in text.stdout


def test_unknown_run_id_exits_3_in_one_line(db: Db) -> None:
    line = one_line_error(db.run("runs", "show", "nope"), EXIT.NOT_FOUND)
    assert line == "luno-wf: unknown run id 'nope'"
    one_line_error(db.run("pause", "nope"), EXIT.NOT_FOUND)


def test_actions_and_a_refused_transition(db: Db) -> None:
    (run,) = db.put(record("order-1"))
    paused = db.json("pause", run.run_id, "--reason", "fraud check")
    assert (paused["run_state"], paused["version"], paused["actor"]) == (
        "PAUSED",
        2,
        "operator:ann",
    )
    assert paused["run_state_reason"] == "fraud check"
    line = one_line_error(db.run("pause", run.run_id), EXIT.REFUSED)
    assert "refused" in line and "Paused" in line
    text = db.run("resume", run.run_id)
    assert text.exit_code == 0
    assert text.stdout.startswith(f"run {run.run_id} (orders/order-1) resumed: now RUNNING")
    one_line_error(db.run("cancel", run.run_id), EXIT.USAGE)  # no --reason
    assert db.json("cancel", run.run_id, "--reason", "asked")["run_state"] == "CANCELLED"
    deleted = db.json("delete-data", run.run_id, "--reason", "GDPR")
    assert deleted["run_state"] == "REQUESTED_DATA_DELETED"


def test_bulk_actions_need_a_filter_and_dry_run_or_yes(db: Db) -> None:
    db.seed(6)
    preview = db.json("resume", "--filter", "--workflow", "orders", "--dry-run")
    assert (preview["matched"], preview["eligible"], preview["dry_run"]) == (6, 3, True)
    text = db.run("resume", "--filter", "--workflow", "orders", "--dry-run")
    assert text.stdout.startswith("would resume 3 of 6 matching runs")
    done = db.json("resume", "--filter", "--status", "PAID", "--yes", "--reason", "fixed")
    assert (done["done"], done["failed"]) == (3, {})
    assert db.json("runs", "list", "--run-state", "PAUSED") == []
    one_line_error(db.run("pause", "--filter", "--dry-run"), EXIT.USAGE)  # no filter
    one_line_error(db.run("pause", "--filter", "--workflow", "orders"), EXIT.USAGE)
    one_line_error(db.run("pause", "--workflow", "orders", "--yes"), EXIT.USAGE)  # no --filter
    one_line_error(
        db.run("cancel", "--filter", "--workflow", "orders", "--yes"), EXIT.USAGE
    )  # no reason


def test_history_and_pruning(db: Db) -> None:
    (run,) = db.put(record("order-1", OrderStatus.SHIPPED, RunState.COMPLETED))
    result = db.run("-o", "json", "runs", "history", run.run_id)
    assert result.exit_code == 0
    (entry,) = json.loads(result.stdout)
    assert (entry["version"], entry["status"], entry["run_state"]) == (1, "SHIPPED", "COMPLETED")
    followed = db.run("-o", "json", "runs", "history", run.run_id, "--follow")
    assert followed.exit_code == 0  # a finished run's history ends the follow
    (item,) = [json.loads(line) for line in followed.stdout.splitlines()]
    assert item["version"] == 1
    pruned = db.json("history", "prune", "--older-than", "30d")
    assert pruned["pruned"] == 0  # a run's newest entry is never pruned
    one_line_error(db.run("history", "prune", "--older-than", "soon"), EXIT.USAGE)
    one_line_error(db.run("runs", "history", "no-such-run"), EXIT.NOT_FOUND)


def test_workflows_graph_and_outbox(db: Db) -> None:
    db.seed(2)
    (summary,) = db.json("workflows", "list")
    assert (summary["name"], summary["runs"], summary["loaded"]) == ("orders", 2, False)
    assert db.json("workflows", "list", app=True)[0]["statuses"][0] == "CREATED"
    line = one_line_error(db.run("workflows", "graph", "orders"), EXIT.UNSUPPORTED)
    assert "--app" in line
    graph = db.run("workflows", "graph", "orders", app=True)
    assert graph.exit_code == 0 and graph.stdout.splitlines()[3] == "stateDiagram-v2"
    (stat,) = db.json("outbox", "stats")
    assert (stat["workflow_name"], stat["pending"]) == ("orders", 2)


def test_lag_of_the_postgres_event_stream(db: Db) -> None:
    assert "no consumer reads" in db.run("lag").stdout
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        s = sql.Identifier(db.schema)
        send = "SELECT {}.send_events('orders-2', ARRAY['a', 'b'], ARRAY[2, 2]::bigint[],"
        conn.execute(sql.SQL(send + " ARRAY['{{}}', '{{}}']::jsonb[], now())").format(s))
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.cursors (topic, name, position) VALUES ('orders-2', 'p', 0)"
            ).format(s)
        )
    (row,) = db.json("lag", app=True)
    assert (row["topic"], row["consumer"], row["workflow_name"], row["status"]) == (
        "orders-2",
        "p",
        "orders",
        "AWAITING_PAYMENT",
    )
    assert (row["waiting"], row["waiting_capped"], row["claimed"]) == (2, False, 0)
    assert row["oldest_unacked"] and row["age_seconds"] >= 0
    table = db.run("lag").stdout
    assert table.split("\n")[0].split() == [
        "TOPIC",
        "CONSUMER",
        "WORKFLOW",
        "STATUS",
        "WAITING",
        "NOT",
        "ACKED",
        "OLDEST",
        "UNACKED",
        "AGE",
        "(S)",
    ]


def test_connection_and_schema_errors_exit_6_in_one_line(db: Db) -> None:
    closed = "host=127.0.0.1 port=1 user=postgres connect_timeout=3"
    result = CliRunner().invoke(cli, ["--dsn", closed, "runs", "list"])
    assert "cannot connect to PostgreSQL" in one_line_error(result, EXIT.UNAVAILABLE)
    missing = CliRunner().invoke(cli, ["--dsn", db.dsn, "--schema", "no_such", "runs", "list"])
    assert "migrate" in one_line_error(missing, EXIT.UNAVAILABLE)
    nothing = CliRunner(env={"LUNO_WF_DSN": None}).invoke(cli, ["runs", "list"])
    assert "--dsn" in one_line_error(nothing, EXIT.USAGE)
    bad_app = db.run("--app", "tests.ops.nowhere:x", "runs", "list")
    one_line_error(bad_app, EXIT.USAGE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_ui_serves_the_app(db: Db, tmp_path: Path) -> None:
    db.seed(1)
    port = _free_port()
    env = {**os.environ, "LUNO_WF_DSN": db.dsn, "PYTHONPATH": os.pathsep.join(sys.path)}
    log = tmp_path / "ui.log"
    with (
        log.open("wb") as sink,
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from luno_wf_ops.cli import main; main()",
                "--schema",
                db.schema,
                "ui",
                "--port",
                str(port),
            ],
            env=env,
            stdout=sink,
            stderr=sink,
        ) as server,
    ):
        try:
            _check_ui(port, server, log)
        finally:
            server.terminate()
            server.wait(timeout=10)


def _check_ui(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/runs", timeout=2) as page:
                body = page.read().decode()
                csp = page.headers["content-security-policy"]
            break
        except OSError:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "luno-wf ui did not answer in 20 s"
            time.sleep(0.2)
    assert "order-0" in body and "read-only" in body
    assert "script-src 'self'" in csp
