"""Behaviour of the in-memory adapters beyond the conformance suite."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from luno_wf._memory._log import Reader, SharedLog
from luno_wf.errors import RoleLost
from luno_wf.memory import MemRoleScheduler, MemStreamer


async def test_log_drops_items_every_group_has_passed_but_keeps_the_newest() -> None:
    log: SharedLog[int] = SharedLog(retain=10)
    reader = Reader(log.group("a", from_latest=False))
    for i in range(100):
        log.append(i)
        position, item = await reader.next()
        assert item == i
        reader.ack(position)
    assert len(log.items) <= 20
    assert log.items[-1] == 99
    # A group created now starts at the oldest item still held, not at a dropped one.
    late = Reader(log.group("late", from_latest=False))
    _, first = await late.next()
    assert first == log.items[0] >= 80


async def test_log_keeps_what_a_group_has_not_acked() -> None:
    log: SharedLog[int] = SharedLog(retain=5)
    slow = Reader(log.group("slow", from_latest=False))
    log.append(0)
    await slow.next()  # taken, never acked
    for i in range(1, 100):
        log.append(i)
    slow.close()
    again = Reader(log.group("slow", from_latest=False))
    assert (await again.next())[1] == 0


async def test_streamer_redelivers_unacked_events_to_the_next_receiver() -> None:
    streamer = MemStreamer()
    sender = await streamer.new_sender("t")
    for i in range(3):
        await sender.send(str(i), 1, {"topic": "t"})
    first = await streamer.new_receiver("t", "name")
    _, ack = await first.recv()
    await ack()
    await first.recv()  # second event taken, not acked
    await first.close()
    await first.close()
    second = await streamer.new_receiver("t", "name")
    assert [(await second.recv())[0].foreign_id for _ in range(2)] == ["1", "2"]


async def test_revoked_role_cancels_the_body_and_raises_role_lost() -> None:
    scheduler = MemRoleScheduler()
    other = scheduler.replica()
    entered = asyncio.Event()
    body_cancelled = False

    async def holder() -> None:
        nonlocal body_cancelled
        async with scheduler.await_role("r"):
            entered.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                body_cancelled = True
                raise

    task = asyncio.create_task(holder())
    await entered.wait()
    assert other.holds("r")
    assert other.revoke("r")
    with pytest.raises(RoleLost):
        await task
    assert body_cancelled
    async with asyncio.timeout(1):
        async with other.await_role("r"):
            assert other.holds("r")
    assert not other.revoke("r")


async def test_decoded_outbox_listing_matches_the_encoded_one() -> None:
    from datetime import UTC, datetime

    from luno_wf import Meta, Record, RunState, decode_outbox_data
    from luno_wf._outbox import _RECENT
    from luno_wf.memory import MemRecordStore

    store = MemRecordStore()
    now = datetime(2025, 1, 1, tzinfo=UTC)
    for i, state in enumerate([RunState.INITIATED, RunState.COMPLETED, RunState.PAUSED]):
        await store.store(
            Record(
                workflow_name="wf",
                foreign_id=f"f{i}",
                run_id=f"r{i}",
                run_state=state,
                status=i + 1,
                object=b"{}",
                created_at=now,
                updated_at=now,
                meta=Meta(version=1),
            )
        )
    encoded = await store.list_outbox_events("wf", 10)
    _RECENT.clear()
    decoded = await store.list_outbox_data("wf", 10)
    assert [row.id for row in encoded] == [row_id for row_id, _ in decoded]
    assert [decode_outbox_data(row.data) for row in encoded] == [data for _, data in decoded]
    assert len(await store.list_outbox_data("wf", 2)) == 2


async def test_a_role_the_fleet_moves_says_so_and_a_revoked_one_does_not() -> None:
    """RoleLost.moved: True when a joining member takes its share, False on revocation."""
    first = MemRoleScheduler()
    roles = [f"r{i}" for i in range(8)]
    lost: list[RoleLost] = []

    async def hold(scheduler: MemRoleScheduler, role: str) -> None:
        while True:  # as the engine does: wait for the role again
            try:
                async with scheduler.await_role(role):
                    await asyncio.sleep(30)
            except RoleLost as err:
                lost.append(err)

    async def until(check: Callable[[], bool]) -> None:
        async with asyncio.timeout(2):
            while not check():
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(hold(first, role)) for role in roles]
    await until(lambda: len(first.holding()) == len(roles))
    second = first.replica()
    tasks += [asyncio.create_task(hold(second, role)) for role in roles]
    await until(lambda: len(first.holding()) == len(second.holding()) == len(roles) // 2)
    assert lost and all(err.moved for err in lost), lost
    moved = len(lost)
    assert second.revoke(sorted(second.holding())[0])
    await until(lambda: len(lost) > moved)
    assert [err.moved for err in lost[moved:]] == [False]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
