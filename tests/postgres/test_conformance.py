"""The PostgreSQL adapters pass the conformance suite, each test on a fresh schema."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

import psycopg
import pytest
from luno_wf_adaptertest import (
    DirectEventsContract,
    DirectEventsFactory,
    EventStreamerContract,
    RecordStoreContract,
    RecordStoreFactory,
    RevokeRole,
    RoleSchedulerContract,
    RoleSchedulersFactory,
    ShardedStreamerContract,
    StallMember,
    StreamerFactory,
    TimeoutStoreContract,
    TimeoutStoreFactory,
)
from luno_wf_postgres import (
    PostgresRecordStore,
    PostgresRoleScheduler,
    PostgresStreamer,
    PostgresTimeoutStore,
    migrate,
)
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import RoleScheduler

pytestmark = pytest.mark.postgres

A = TypeVar("A")


def schema_factory(
    dsn: str,
    schema: str,
    make: Callable[[AsyncConnectionPool[Any], str], A],
    close: Callable[[A], Awaitable[object]] | None = None,
) -> Callable[[], AbstractAsyncContextManager[A]]:
    """Each entry: a new pool on ``schema``, migrated on first use and emptied after.

    Entries may run on different event loops (the state machines use their own), so the
    pool is made inside; emptying the tables (ids restarting at 1) stands in for a new
    schema, which is much faster to get than a migration.
    """
    empty = sql.SQL(
        "TRUNCATE {s}.records, {s}.outbox, {s}.history, {s}.timeouts, {s}.events, {s}.cursors, "
        "{s}.claims RESTART IDENTITY"
    ).format(s=sql.Identifier(schema))

    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[A]:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn, min_size=1, max_size=4, open=False
        )
        await pool.open(wait=True)
        try:
            await migrate(pool, schema=schema)
            adapter = make(pool, schema)
            try:
                yield adapter
            finally:
                if close is not None:
                    await close(adapter)
            async with pool.connection() as conn:
                await conn.execute(empty)
        finally:
            await pool.close()

    return factory


class TestPostgresRecordStore(RecordStoreContract):
    @pytest.fixture
    def make_store(self, postgres_dsn: str, pg_schema: str) -> RecordStoreFactory:
        return schema_factory(
            postgres_dsn,
            pg_schema,
            lambda pool, s: PostgresRecordStore(pool, schema=s),
            # Give back the connections it keeps, before the pool closes: one checked out
            # when the pool closes stays open until collected.
            lambda store: store.close(),
        )


class TestPostgresDirectEvents(DirectEventsContract):
    @pytest.fixture
    def make_pair(self, postgres_dsn: str, pg_schema: str) -> DirectEventsFactory:
        async def close(pair: tuple[PostgresRecordStore, PostgresStreamer]) -> None:
            await pair[0].close()
            await pair[1].close()

        return schema_factory(
            postgres_dsn,
            pg_schema,
            lambda pool, s: (PostgresRecordStore(pool, schema=s), PostgresStreamer(pool, schema=s)),
            close,
        )


class TestPostgresTimeoutStore(TimeoutStoreContract):
    @pytest.fixture
    def make_timeout_store(self, postgres_dsn: str, pg_schema: str) -> TimeoutStoreFactory:
        return schema_factory(
            postgres_dsn, pg_schema, lambda pool, s: PostgresTimeoutStore(pool, schema=s)
        )


def streamer_factory(dsn: str, schema: str) -> StreamerFactory:
    """Fresh PostgresStreamers on the test's schema, each closed after use."""
    return schema_factory(
        dsn, schema, lambda pool, s: PostgresStreamer(pool, schema=s), lambda st: st.close()
    )


class TestPostgresStreamer(EventStreamerContract):
    @pytest.fixture
    def make_streamer(self, postgres_dsn: str, pg_schema: str) -> StreamerFactory:
        return streamer_factory(postgres_dsn, pg_schema)


class TestPostgresShardedStreamer(ShardedStreamerContract):
    @pytest.fixture
    def make_streamer(self, postgres_dsn: str, pg_schema: str) -> StreamerFactory:
        return streamer_factory(postgres_dsn, pg_schema)


class TestPostgresRoleScheduler(RoleSchedulerContract):
    """Short heartbeats and leases, so that the handover cases run in a few seconds."""

    settle_time: ClassVar[timedelta] = timedelta(milliseconds=600)
    handover_timeout: ClassVar[timedelta] = timedelta(seconds=15)
    lease_timeout: ClassVar[timedelta] = timedelta(seconds=20)

    @pytest.fixture
    def namespace(self) -> str:
        return f"c_{uuid.uuid4().hex[:16]}"

    @pytest.fixture
    def make_schedulers(
        self, postgres_dsn: str, fleet_schema: str, namespace: str
    ) -> RoleSchedulersFactory:
        @contextlib.asynccontextmanager
        async def factory(n: int) -> AsyncIterator[Sequence[PostgresRoleScheduler]]:
            schedulers = [
                PostgresRoleScheduler(
                    postgres_dsn,
                    namespace=namespace,
                    schema=fleet_schema,
                    heartbeat_interval=timedelta(milliseconds=100),
                    lease_duration=timedelta(seconds=1),
                    poll_interval=timedelta(milliseconds=50),
                )
                for _ in range(n)
            ]
            try:
                yield schedulers
            finally:
                for scheduler in schedulers:
                    await scheduler.close()

        return factory

    @pytest.fixture
    def revoke_role(self, postgres_dsn: str, fleet_schema: str, namespace: str) -> RevokeRole:
        async def revoke(schedulers: Sequence[RoleScheduler], role: str) -> None:
            # Expire the holder's lease, as a lost heartbeat would.
            async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
                await conn.execute(
                    sql.SQL(
                        "UPDATE {}.role_leases SET expires_at = now() - interval '1 second' "
                        "WHERE namespace = %s AND role = %s"
                    ).format(sql.Identifier(fleet_schema)),
                    (namespace, role),
                )

        return revoke

    @pytest.fixture
    def stall_member(self) -> StallMember:
        return stall


@contextlib.asynccontextmanager
async def stall(scheduler: RoleScheduler) -> AsyncIterator[None]:
    """The member's task stops beating (as a stopped process would) for the block."""
    assert isinstance(scheduler, PostgresRoleScheduler)
    with scheduler._frozen():
        yield
