"""PostgresRoleScheduler beyond the contract: one connection per member, the tables, prompt
handover on a clean leave and a join, a dropped connection, an expired lease, options."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from luno_wf_adaptertest.rolescheduler import Fleet, Monitor
from luno_wf_postgres import PostgresRoleScheduler
from psycopg import sql
from psycopg.errors import UndefinedTable

from luno_wf.errors import RoleLost

pytestmark = pytest.mark.postgres

MakeScheduler = Callable[..., PostgresRoleScheduler]


@pytest.fixture
async def make_scheduler(postgres_dsn: str, fleet_schema: str) -> AsyncIterator[MakeScheduler]:
    """Members of one fresh namespace (fast timings unless told otherwise), closed after."""
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    made: list[PostgresRoleScheduler] = []

    def make(**options: Any) -> PostgresRoleScheduler:
        timings: dict[str, Any] = {
            "heartbeat_interval": timedelta(milliseconds=100),
            "lease_duration": timedelta(seconds=1),
            "poll_interval": timedelta(milliseconds=50),
        }
        scheduler = PostgresRoleScheduler(
            postgres_dsn, namespace=namespace, schema=fleet_schema, **{**timings, **options}
        )
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        await scheduler.close()


async def query(dsn: str, statement: sql.Composed | sql.SQL, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(statement, params)
        return await cur.fetchall() if cur.description is not None else []


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                if check():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout}s") from None


async def test_at_most_one_holder_at_a_time(make_scheduler: MakeScheduler) -> None:
    holding = 0
    most = 0
    turns = 0

    async def hold(scheduler: PostgresRoleScheduler) -> None:
        nonlocal holding, most, turns
        while True:
            try:
                async with scheduler.await_role("leader-lock"):
                    holding += 1
                    most = max(most, holding)
                    try:
                        await asyncio.sleep(0.05)
                    finally:
                        holding -= 1
                    turns += 1
                    return
            except RoleLost:
                continue  # the role moved to its owner: ask again, as the engine does

    await asyncio.wait_for(asyncio.gather(*(hold(make_scheduler()) for _ in range(5))), 30)
    assert (most, turns) == (1, 5)


async def test_each_member_uses_one_connection(
    make_scheduler: MakeScheduler, postgres_dsn: str
) -> None:
    apps = [f"member-{i}-{uuid.uuid4().hex[:8]}" for i in range(2)]
    members = [make_scheduler(connect_kwargs={"application_name": app}) for app in apps]
    fleet = Fleet([f"role-{i}" for i in range(10)], Monitor())
    count = sql.SQL("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s")
    try:
        for member in members:
            fleet.join(member)
        await until(lambda: fleet.spread([0, 1]) == [5, 5], 15, "10 roles over 2 members")
        # Each member holds five roles and waits for five: one session each.
        for app in apps:
            assert await query(postgres_dsn, count, app) == [(1,)]
    finally:
        await fleet.stop()


async def test_the_tables_show_the_fleet_and_a_close_empties_them(
    make_scheduler: MakeScheduler, postgres_dsn: str, fleet_schema: str
) -> None:
    first, second = make_scheduler(), make_scheduler()
    fleet = Fleet([f"role-{i}" for i in range(6)], Monitor())
    s = sql.Identifier(fleet_schema)
    try:
        fleet.join(first)
        fleet.join(second)
        await until(lambda: fleet.spread([0, 1]) == [3, 3], 15, "6 roles over 2 members")
        members = await query(
            postgres_dsn,
            sql.SQL(
                "SELECT member_id, cardinality(roles), pid > 0, expires_at > now() "
                "FROM {}.members WHERE namespace = %s ORDER BY member_id"
            ).format(s),
            first.namespace,
        )
        assert sorted(members) == sorted(
            [(first.member_id, 6, True, True), (second.member_id, 6, True, True)]
        )
        leases = await query(
            postgres_dsn,
            sql.SQL(
                "SELECT member_id, count(*) FROM {}.role_leases "
                "WHERE namespace = %s AND expires_at > now() GROUP BY member_id"
            ).format(s),
            first.namespace,
        )
        assert sorted(leases) == sorted([(first.member_id, 3), (second.member_id, 3)])
    finally:
        await fleet.stop()
    await first.close()
    await second.close()
    rows = await query(
        postgres_dsn,
        sql.SQL(
            "SELECT (SELECT count(*) FROM {s}.members WHERE namespace = %s), "
            "(SELECT count(*) FROM {s}.role_leases WHERE namespace = %s)"
        ).format(s=s),
        first.namespace,
        first.namespace,
    )
    assert rows == [(0, 0)]


async def test_a_leave_and_a_join_are_announced(make_scheduler: MakeScheduler) -> None:
    """With heartbeats and polls far apart, roles still move at once on a leave or join."""

    def slow() -> PostgresRoleScheduler:
        return make_scheduler(
            heartbeat_interval=timedelta(seconds=20),
            lease_duration=timedelta(seconds=60),
            poll_interval=timedelta(seconds=20),
        )

    members = [slow(), slow(), slow()]
    fleet = Fleet([f"role-{i}" for i in range(6)], Monitor())
    try:
        fleet.join(members[0])
        fleet.join(members[1])
        await until(lambda: fleet.spread([0, 1]) == [3, 3], 10, "6 roles over 2 members")
        await fleet.leave(0)
        await until(lambda: fleet.spread([1]) == [6], 5, "the other member taking them all")
        fleet.join(members[2])
        await until(lambda: fleet.spread([1, 2]) == [3, 3], 5, "a new member taking its share")
        assert fleet.monitor.overlaps == []
    finally:
        await fleet.stop()


async def test_a_dropped_connection_keeps_the_roles(
    make_scheduler: MakeScheduler, postgres_dsn: str
) -> None:
    """The member connects again and renews its leases before they lapse: no role is lost."""
    app = f"dropped-{uuid.uuid4().hex[:8]}"
    scheduler = make_scheduler(
        connect_kwargs={"application_name": app},
        heartbeat_interval=timedelta(milliseconds=200),
        lease_duration=timedelta(seconds=3),
    )
    fleet = Fleet(["a", "b"], Monitor())
    try:
        fleet.join(scheduler)
        await until(lambda: fleet.spread([0]) == [2], 10, "taking both roles")
        await query(
            postgres_dsn,
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
            ),
            app,
        )
        await asyncio.sleep(4)  # past the lease: it was renewed on the new connection
        assert fleet.spread([0]) == [2]
        assert fleet.lost(0) == 0
    finally:
        await fleet.stop()


async def test_an_expired_lease_cancels_the_body_and_raises_role_lost(
    make_scheduler: MakeScheduler, postgres_dsn: str, fleet_schema: str
) -> None:
    first, second = make_scheduler(), make_scheduler()
    body_cancelled = False
    inside = asyncio.Event()

    async def holder() -> None:
        nonlocal body_cancelled
        async with first.await_role("leader-lost"):
            inside.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                body_cancelled = True
                raise

    task = asyncio.create_task(holder())
    await asyncio.wait_for(inside.wait(), 10)
    await query(
        postgres_dsn,
        sql.SQL(
            "UPDATE {}.role_leases SET expires_at = now() - interval '1 second' "
            "WHERE namespace = %s AND role = 'leader-lost'"
        ).format(sql.Identifier(fleet_schema)),
        first.namespace,
    )
    with pytest.raises(RoleLost, match="lapsed") as lost:
        await asyncio.wait_for(task, 10)
    assert body_cancelled
    assert not lost.value.moved  # a fault, not a move the fleet made
    async with asyncio.timeout(5), second.await_role("leader-lost"):
        pass


async def test_roles_a_joining_member_takes_are_lost_as_moved(
    make_scheduler: MakeScheduler,
) -> None:
    first = make_scheduler()
    roles = [f"moving-{i}" for i in range(6)]
    lost: list[RoleLost] = []
    inside: dict[str, PostgresRoleScheduler] = {}

    async def hold(scheduler: PostgresRoleScheduler, role: str) -> None:
        while True:
            try:
                async with scheduler.await_role(role):
                    inside[role] = scheduler
                    try:
                        await asyncio.sleep(30)
                    finally:
                        del inside[role]
            except RoleLost as err:
                lost.append(err)

    def held_by(scheduler: PostgresRoleScheduler) -> int:
        return sum(1 for holder in inside.values() if holder is scheduler)

    tasks = [asyncio.create_task(hold(first, role)) for role in roles]
    second = make_scheduler()
    try:
        await until(lambda: held_by(first) == len(roles), 10, "first holds every role")
        tasks += [asyncio.create_task(hold(second, role)) for role in roles]
        await until(lambda: held_by(second) == len(roles) // 2, 10, "second takes half")
        assert lost and all(err.moved for err in lost), lost
        assert all("moved to member" in str(err) for err in lost)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_stalled_holder_stops_before_its_lease_can_pass(
    make_scheduler: MakeScheduler,
) -> None:
    """A member whose heartbeats stop cancels its bodies by its own clock, before the
    database's lease lapses; the other member takes the role only after that."""
    first, second = make_scheduler(), make_scheduler()
    events: list[str] = []
    inside = asyncio.Event()

    async def hold() -> None:
        async with first.await_role("stall"):
            inside.set()
            try:
                await asyncio.sleep(30)
            finally:
                events.append("first out")

    async def take() -> None:
        async with second.await_role("stall"):
            events.append("second in")

    held = asyncio.create_task(hold())
    await asyncio.wait_for(inside.wait(), 10)
    loop = asyncio.get_running_loop()
    with first._frozen():
        stalled_at = loop.time()
        taker = asyncio.create_task(take())
        with pytest.raises(RoleLost, match="not renewed in time"):
            await asyncio.wait_for(held, 10)
        assert loop.time() - stalled_at <= 1.5  # within the lease (1 s) and a little
        await asyncio.wait_for(taker, 10)
    assert events == ["first out", "second in"]


async def test_outer_cancel_of_holder_is_a_cancel(make_scheduler: MakeScheduler) -> None:
    first, second = make_scheduler(), make_scheduler()
    inside = asyncio.Event()

    async def holder() -> None:
        async with first.await_role("leader-cancel"):
            inside.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(holder())
    await asyncio.wait_for(inside.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5), second.await_role("leader-cancel"):
        pass


async def test_missing_tables_are_reported(postgres_dsn: str) -> None:
    schema = f"none_{uuid.uuid4().hex[:8]}"
    scheduler = PostgresRoleScheduler(postgres_dsn, namespace=schema)
    try:
        with pytest.raises(UndefinedTable, match=rf"migrate\(pool_or_dsn, schema='{schema}'\)"):
            async with asyncio.timeout(10), scheduler.await_role("r"):
                pass
    finally:
        await scheduler.close()


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="letters"):
        PostgresRoleScheduler("", namespace="bad name")
    with pytest.raises(ValueError, match="letters"):
        PostgresRoleScheduler("", schema="bad name")
    with pytest.raises(ValueError, match="poll_interval"):
        PostgresRoleScheduler("", poll_interval=timedelta(0))
    with pytest.raises(ValueError, match="twice"):
        PostgresRoleScheduler(
            "", heartbeat_interval=timedelta(seconds=1), lease_duration=timedelta(seconds=1)
        )
    with pytest.raises(ValueError, match="role"):
        PostgresRoleScheduler("").await_role("")
    with pytest.warns(DeprecationWarning, match="heartbeat_interval"):
        PostgresRoleScheduler("", check_interval=timedelta(seconds=1))


async def test_a_cancelled_member_leaves_at_once(
    make_scheduler: MakeScheduler, postgres_dsn: str, fleet_schema: str
) -> None:
    """asyncio.run cancels every task as it ends: the member gives its leases back then."""
    scheduler = make_scheduler(lease_duration=timedelta(seconds=60))
    fleet = Fleet(["a", "b"], Monitor())
    try:
        fleet.join(scheduler)
        await until(lambda: fleet.spread([0]) == [2], 10, "taking both roles")
        member = scheduler._member
        assert member is not None and member.task is not None
        member.task.cancel()
        await asyncio.wait([member.task])
        rows = await query(
            postgres_dsn,
            sql.SQL(
                "SELECT (SELECT count(*) FROM {s}.members WHERE namespace = %s), "
                "(SELECT count(*) FROM {s}.role_leases WHERE namespace = %s)"
            ).format(s=sql.Identifier(fleet_schema)),
            scheduler.namespace,
            scheduler.namespace,
        )
        assert rows == [(0, 0)]
        await until(lambda: fleet.lost(0) == 2, 5, "the holders losing their roles")
    finally:
        await fleet.stop()


def test_a_scheduler_used_on_one_loop_closes_on_another(
    postgres_dsn: str, fleet_schema: str
) -> None:
    scheduler = PostgresRoleScheduler(
        postgres_dsn, namespace=f"t_{uuid.uuid4().hex[:12]}", schema=fleet_schema
    )

    async def hold() -> None:
        async with asyncio.timeout(10), scheduler.await_role("a"):
            pass

    asyncio.run(hold())
    asyncio.run(hold())  # a new loop: a new member
    asyncio.run(scheduler.close())
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.await_role("a")
