from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from luno_wf_postgres import PostgresRecordStore, migrate, migration_statements
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import Meta, RunState

pytestmark = pytest.mark.postgres

DOC = Path(__file__).parents[2] / "docs" / "postgres.md"


async def test_migrate_is_idempotent_and_safe_concurrently(
    pg_pool: AsyncConnectionPool[Any], pg_schema: str
) -> None:
    await migrate(pg_pool, schema=pg_schema)  # the fixture already ran it once
    await asyncio.gather(*(migrate(pg_pool, schema=pg_schema) for _ in range(3)))
    async with pg_pool.connection() as conn:
        await migrate(conn, schema=pg_schema)
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name",
            (pg_schema,),
        )
        tables = [row[0] for row in await cur.fetchall()]
    assert tables == [
        "claims",
        "cursors",
        "dead_letters",
        "events",
        "history",
        "members",
        "outbox",
        "records",
        "role_leases",
        "timeouts",
    ]


@pytest.mark.parametrize(
    "schema", ["", "1abc", "has space", 'quo"te', "semi;colon", "x" * 51, "drop-table"]
)
def test_schema_must_be_an_identifier(schema: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        migration_statements(schema)


async def test_bad_target_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"AsyncConnectionPool.*got bytes"):
        await migrate(b"postgresql://nowhere")  # type: ignore[arg-type]


def test_docs_show_the_sql_migrate_runs(postgres_dsn: str) -> None:
    text = DOC.read_text()
    found = re.search(
        r"<!-- migration-sql:start -->\n```sql\n(.*?)\n```\n<!-- migration-sql:end -->",
        text,
        re.S,
    )
    assert found, "docs/postgres.md lost its migration-sql block"
    with psycopg.connect(postgres_dsn) as conn:
        expected = ";\n\n".join(s.as_string(conn) for s in migration_statements()) + ";"
    assert found.group(1) == expected, "docs/postgres.md SQL differs from migrate()"


def test_identifier_is_quoted_not_pasted(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        first = migration_statements("Mixed_Case")[0].as_string(conn)
        assert sql.Identifier("Mixed_Case").as_string(conn) == '"Mixed_Case"'
    assert first == 'CREATE SCHEMA IF NOT EXISTS "Mixed_Case"'


async def test_a_schema_without_history_migrates_in_place(
    postgres_dsn: str, pg_schema: str
) -> None:
    """A schema of the version before history gains it; its rows are read as before."""
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        # The previous version's schema: everything but the history table and its index.
        for statement in migration_statements(pg_schema):
            if "history" not in statement.as_string(conn):
                await conn.execute(statement)
        # A run written by the previous version: meta without the newer keys.
        run_id = str(uuid.uuid4())
        stored = datetime(2024, 5, 1, tzinfo=UTC)
        await conn.execute(
            sql.SQL(
                "INSERT INTO {}.records (run_id, workflow_name, foreign_id, run_state, status, "
                "object, created_at, updated_at, version, meta) "
                "VALUES (%s, 'wf', 'fid', 2, 1, '{{}}', %s, %s, 1, %s::jsonb)"
            ).format(sql.Identifier(pg_schema)),
            (
                run_id,
                stored,
                stored,
                '{"RunStateReason": "r", "StatusDescription": "One", "Version": 1, '
                '"TraceOrigin": "t"}',
            ),
        )

    await migrate(postgres_dsn, schema=pg_schema)
    await migrate(postgres_dsn, schema=pg_schema)  # and again: nothing changes

    async with PostgresRecordStore(postgres_dsn, schema=pg_schema) as store:
        old = await store.lookup(run_id)
        assert old.meta == Meta(
            run_state_reason="r", status_description="One", version=1, trace_origin="t"
        )
        assert await store.history(run_id) == [], "no entries for writes before the upgrade"
        updated = attrs.evolve(
            old,
            status=2,
            run_state=RunState.COMPLETED,
            updated_at=stored + timedelta(seconds=1),
            meta=attrs.evolve(old.meta, version=2, actor="step:One"),
        )
        await store.store(updated)
        assert await store.lookup(run_id) == updated
        [entry] = await store.history(run_id)
        assert (entry.version, entry.status, entry.actor) == (2, 2, "step:One")
