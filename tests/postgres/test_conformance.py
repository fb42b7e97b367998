"""The PostgreSQL adapters pass the conformance suite, each on a fresh schema."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import pytest
from luno_wf_adaptertest import (
    RecordStoreContract,
    RecordStoreFactory,
    TimeoutStoreContract,
    TimeoutStoreFactory,
)
from luno_wf_postgres import PostgresRecordStore, PostgresTimeoutStore, migrate
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

pytestmark = pytest.mark.postgres

A = TypeVar("A")


def schema_factory(
    dsn: str, make: Callable[[AsyncConnectionPool[Any], str], A]
) -> Callable[[], AbstractAsyncContextManager[A]]:
    """Each entry: a new pool and schema, migrated; dropped and closed on exit."""

    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[A]:
        schema = f"c_{uuid.uuid4().hex[:16]}"
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn, min_size=1, max_size=4, open=False
        )
        await pool.open(wait=True)
        try:
            await migrate(pool, schema=schema)
            yield make(pool, schema)
        finally:
            async with pool.connection() as conn:
                await conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
            await pool.close()

    return factory


class TestPostgresRecordStore(RecordStoreContract):
    @pytest.fixture
    def make_store(self, postgres_dsn: str) -> RecordStoreFactory:
        return schema_factory(postgres_dsn, lambda pool, s: PostgresRecordStore(pool, schema=s))


class TestPostgresTimeoutStore(TimeoutStoreContract):
    @pytest.fixture
    def make_timeout_store(self, postgres_dsn: str) -> TimeoutStoreFactory:
        return schema_factory(postgres_dsn, lambda pool, s: PostgresTimeoutStore(pool, schema=s))
