from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from luno_wf_postgres import PostgresTimeoutStore
from psycopg_pool import AsyncConnectionPool

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(pg_pool: AsyncConnectionPool[Any], pg_schema: str) -> PostgresTimeoutStore:
    return PostgresTimeoutStore(pg_pool, schema=pg_schema)


async def seed(store: PostgresTimeoutStore, expire_at: datetime) -> None:
    for run_id in ("1", "2", "3"):
        await store.create("example", "andrew", run_id, 1, expire_at)


async def test_complete_and_cancel(store: PostgresTimeoutStore) -> None:
    now = datetime.now(UTC)
    await seed(store, now - timedelta(hours=1))
    first, second, third = await store.list("example")
    assert (first.id, second.id, third.id) == (1, 2, 3)
    await store.complete(second.id)
    await store.cancel(third.id)
    await store.cancel(999)  # unknown: not an error
    await store.complete(999)
    valid = await store.list_valid("example", 1, now)
    assert [t.run_id for t in valid] == ["1"]
    assert [t.run_id for t in await store.list("example")] == ["1"]


async def test_list_round_trips_fields(store: PostgresTimeoutStore) -> None:
    now = datetime.now(UTC)
    expire = now - timedelta(hours=1)
    await seed(store, expire)
    rows = await store.list("example")
    assert [r.run_id for r in rows] == ["1", "2", "3"]
    for row in rows:
        assert (row.workflow_name, row.foreign_id, row.status, row.completed) == (
            "example",
            "andrew",
            1,
            False,
        )
        assert row.expire_at == expire
        assert abs(row.created_at - now) < timedelta(seconds=10)
        assert row.created_at.tzinfo is not None


async def test_list_valid_is_inclusive_and_isolated(store: PostgresTimeoutStore) -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    await store.create("example", "a", "r1", 1, now)
    await store.create("example", "a", "r2", 1, now + timedelta(microseconds=1))
    await store.create("example", "a", "r3", 2, now)
    await store.create("other", "a", "r4", 1, now)
    assert [t.run_id for t in await store.list_valid("example", 1, now)] == ["r1"]
    later = now + timedelta(seconds=1)
    assert [t.run_id for t in await store.list_valid("example", 1, later)] == ["r1", "r2"]
    assert [t.run_id for t in await store.list_valid("example", 2, later)] == ["r3"]


async def test_repeated_create_is_ignored_even_after_cancel(store: PostgresTimeoutStore) -> None:
    now = datetime.now(UTC)
    await store.create("example", "a", "r1", 1, now, timer=0, version=3)
    await store.create("example", "a", "r1", 1, now, timer=0, version=3)
    await store.create("example", "a", "r1", 1, now, timer=1, version=3)
    rows = await store.list("example")
    assert [(r.timer, r.version) for r in rows] == [(0, 3), (1, 3)]
    await store.cancel(rows[0].id)
    await store.create("example", "a", "r1", 1, now, timer=0, version=3)
    assert [(r.timer, r.version) for r in await store.list("example")] == [(1, 3)]


async def test_naive_datetimes_refused(store: PostgresTimeoutStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.create("example", "a", "r1", 1, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.list_valid("example", 1, datetime(2024, 1, 1))
