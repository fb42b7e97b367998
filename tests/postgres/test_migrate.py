from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from luno_wf_postgres import migrate, migration_statements
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

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
        "events",
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
