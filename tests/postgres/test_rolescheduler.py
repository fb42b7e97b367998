from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import psycopg
import pytest
from luno_wf_postgres import PostgresRoleScheduler

from luno_wf.errors import RoleLost

pytestmark = pytest.mark.postgres


@pytest.fixture
def schedulers(postgres_dsn: str) -> list[PostgresRoleScheduler]:
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    return [
        PostgresRoleScheduler(
            postgres_dsn,
            namespace=namespace,
            poll_interval=timedelta(milliseconds=50),
            check_interval=timedelta(milliseconds=100),
            check_timeout=timedelta(seconds=2),
        )
        for _ in range(5)
    ]


async def test_at_most_one_holder(schedulers: list[PostgresRoleScheduler]) -> None:
    holding = 0
    most = 0

    async def hold(scheduler: PostgresRoleScheduler) -> None:
        nonlocal holding, most
        async with scheduler.await_role("leader-lock"):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.05)
            holding -= 1

    await asyncio.gather(*(hold(s) for s in schedulers))
    assert most == 1


async def test_waiting_is_cancellable_and_release_hands_over(
    schedulers: list[PostgresRoleScheduler],
) -> None:
    first, second = schedulers[:2]
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with first.await_role("leader-releasing"):
            entered.set()
            await release.wait()

    hold = asyncio.create_task(holder())
    await entered.wait()

    async def wait_for_role() -> None:
        async with second.await_role("leader-releasing"):
            pass

    waiter = asyncio.create_task(wait_for_role())
    await asyncio.sleep(0.2)
    assert not waiter.done()
    waiter.cancel()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert loop.time() - started < 1.0

    # A release is announced: the next waiter gets the role well before its poll interval.
    slow = PostgresRoleScheduler(
        second._conninfo, namespace=second._namespace, poll_interval=timedelta(seconds=30)
    )
    got = asyncio.Event()

    async def take() -> None:
        async with slow.await_role("leader-releasing"):
            got.set()

    taker = asyncio.create_task(take())
    await asyncio.sleep(0.3)
    assert not got.is_set()
    release.set()
    await hold
    await asyncio.wait_for(got.wait(), 5)
    await taker


async def test_role_is_reacquirable_and_roles_are_independent(
    schedulers: list[PostgresRoleScheduler],
) -> None:
    a, b = schedulers[:2]
    for _ in range(3):
        async with a.await_role("r1"), b.await_role("r2"):
            pass
        async with b.await_role("r1"):
            pass


async def test_lost_connection_cancels_body_and_raises_role_lost(
    schedulers: list[PostgresRoleScheduler], postgres_dsn: str
) -> None:
    first, second = schedulers[:2]
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
    await inside.wait()
    # Kill the holder's backend, as a failed server or network would.
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
            "AND objid = (hashtextextended(%s, 0) & x'ffffffff'::bigint)::oid",
            (f"{first._namespace}/leader-lost",),
        )
    with pytest.raises(RoleLost):
        await asyncio.wait_for(task, 10)
    assert body_cancelled
    # The role is free for another holder.
    async with asyncio.timeout(5), second.await_role("leader-lost"):
        pass


async def test_outer_cancel_of_holder_is_a_cancel(
    schedulers: list[PostgresRoleScheduler],
) -> None:
    inside = asyncio.Event()

    async def holder() -> None:
        async with schedulers[0].await_role("leader-cancel"):
            inside.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(holder())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5), schedulers[1].await_role("leader-cancel"):
        pass


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="letters"):
        PostgresRoleScheduler("", namespace="bad name")
    with pytest.raises(ValueError, match="poll_interval"):
        PostgresRoleScheduler("", poll_interval=timedelta(0))
    with pytest.raises(ValueError, match="role"):
        PostgresRoleScheduler("").await_role("")


async def test_waiting_callers_share_one_connection(postgres_dsn: str) -> None:
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    holding_app, waiting_app = f"holding-{namespace}", f"waiting-{namespace}"

    def scheduler(app: str) -> PostgresRoleScheduler:
        return PostgresRoleScheduler(
            postgres_dsn,
            namespace=namespace,
            poll_interval=timedelta(seconds=30),  # only a release notification wakes waiters
            connect_kwargs={"application_name": app},
        )

    holder, waiter = scheduler(holding_app), scheduler(waiting_app)
    roles = [f"role-{i}" for i in range(5)]
    release = {role: asyncio.Event() for role in roles}
    taken: list[str] = []

    async def hold(role: str) -> None:
        async with holder.await_role(role):
            await release[role].wait()

    async def take(role: str) -> None:
        async with waiter.await_role(role):
            taken.append(role)
            await asyncio.Event().wait()  # hold until cancelled

    async def sessions(app: str) -> int:
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def until_sessions(app: str, count: int) -> None:
        for _ in range(500):
            if await sessions(app) == count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{app} never had {count} sessions (has {await sessions(app)})")

    holding = [asyncio.create_task(hold(role)) for role in roles]
    await until_sessions(holding_app, 5)
    waiting = [asyncio.create_task(take(role)) for role in roles]
    try:
        await until_sessions(waiting_app, 1)  # five callers wait on one connection
        await asyncio.sleep(0.2)
        assert await sessions(waiting_app) == 1
        assert taken == []
        release[roles[2]].set()  # a release wakes the waiter of that role at once
        async with asyncio.timeout(10):
            while not taken:
                await asyncio.sleep(0.01)
        assert taken == [roles[2]]
        assert await sessions(waiting_app) == 2  # the watch, and the held role's connection
    finally:
        for task in waiting + holding:
            task.cancel()
        await asyncio.gather(*waiting, *holding, return_exceptions=True)
    await until_sessions(waiting_app, 0)  # nothing waits any more: the watch has closed
