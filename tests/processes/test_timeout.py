"""Timeouts with the fake clock: no real waiting."""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import attrs

from luno_wf import Builder, Run, RunState, duration_timer, time_timer
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer, MemTimeoutStore
from luno_wf.testing import FakeClock, await_timeout_insert, wait_for

from ..support import Obj, Status, Stores


class SyncStatus(enum.IntEnum):
    UNKNOWN = 0
    STARTED = 1
    EMAIL_SET = 2
    REGULATION_TIMEOUT = 3
    COMPLETED = 4


@attrs.define
class User:
    uid: str = ""
    email: str = ""
    country_code: str = ""


async def test_full_workflow_run_through_with_a_timeout_takes_no_real_time() -> None:
    """Spec 5.2 "Acceptance test - full workflow run through" on the memory adapters."""
    clock = FakeClock(datetime(2023, 4, 9, 8, 30, tzinfo=UTC))

    async def set_email(r: Run[User, SyncStatus]) -> SyncStatus:
        r.object.email = "andrew@workflow.com"
        return SyncStatus.EMAIL_SET

    async def timer(r: Run[User, SyncStatus], now: datetime) -> datetime | None:
        return now + timedelta(hours=1) if r.object.country_code == "GB" else None

    async def cool_down_over(r: Run[User, SyncStatus], now: datetime) -> SyncStatus:
        if r.object.email == "andrew@workflow.com":
            return SyncStatus.REGULATION_TIMEOUT
        return r.skip()

    async def finish(r: Run[User, SyncStatus]) -> SyncStatus:
        r.object.uid = str(uuid.uuid4())
        return SyncStatus.COMPLETED

    fast = timedelta(milliseconds=200)
    b = Builder("sync user 2", User, SyncStatus)
    b.add_step(
        SyncStatus.STARTED,
        set_email,
        SyncStatus.EMAIL_SET,
        polling_frequency=fast,
        parallel_count=5,
    )
    b.add_timeout(
        SyncStatus.EMAIL_SET,
        timer,
        cool_down_over,
        SyncStatus.REGULATION_TIMEOUT,
        polling_frequency=fast,
    )
    b.add_step(
        SyncStatus.REGULATION_TIMEOUT,
        finish,
        SyncStatus.COMPLETED,
        polling_frequency=fast,
        parallel_count=5,
    )
    wf = b.build(
        MemStreamer(clock=clock),
        MemRecordStore(clock=clock),
        MemRoleScheduler(),
        timeout_store=MemTimeoutStore(clock=clock),
        clock=clock,
    )
    async with wf:
        run_id = await wf.trigger("1", initial_value=User(country_code="GB"))
        await await_timeout_insert(wf, "1", run_id, SyncStatus.EMAIL_SET)
        clock.advance(timedelta(hours=1))
        run = await wf.await_status("1", run_id, SyncStatus.COMPLETED)
    assert run.object.email == "andrew@workflow.com"
    assert run.status.name == "COMPLETED"
    assert run.object.uid
    # The hour passed on the fake clock only: the wall clock never waited for it (run with
    # --durations to see the test take a fraction of a second).
    assert clock.now() == datetime(2023, 4, 9, 9, 30, tzinfo=UTC)


def order_workflow(calls: Counter[str]) -> Builder[Obj, Status]:
    async def start(r: Run[Obj, Status]) -> Status:
        return Status.MIDDLE

    async def expire(r: Run[Obj, Status], now: datetime) -> Status:
        calls[r.run_id] += 1
        if r.object.note == "skip":
            return r.skip()
        return Status.END

    b = Builder("timeouts", Obj, Status)
    b.add_step(Status.STARTED, start, Status.MIDDLE)
    b.add_timeout(
        Status.MIDDLE,
        duration_timer(timedelta(minutes=30)),
        expire,
        Status.END,
        polling_frequency=timedelta(milliseconds=20),
    )
    return b


async def test_timeout_does_not_fire_early_and_fires_once() -> None:
    calls: Counter[str] = Counter()
    s = Stores(clock=FakeClock())
    assert s.clock is not None
    async with s.build(order_workflow(calls)) as wf:
        run_id = await wf.trigger("f")
        await await_timeout_insert(wf, "f", run_id, Status.MIDDLE)
        s.clock.advance(timedelta(minutes=29))
        await asyncio.sleep(0.1)
        assert (await wf.lookup(run_id)).status == Status.MIDDLE
        s.clock.advance(timedelta(minutes=1))
        await wf.await_status("f", run_id, Status.END)
        await asyncio.sleep(0.1)
    assert calls == Counter({run_id: 1})
    rows = await s.timeouts.list("timeouts")
    assert rows == []  # completed rows are not listed


async def test_skipped_timeout_is_completed_not_fired_every_poll() -> None:
    calls: Counter[str] = Counter()
    s = Stores(clock=FakeClock())
    assert s.clock is not None
    async with s.build(order_workflow(calls)) as wf:
        run_id = await wf.trigger("f", initial_value=Obj(note="skip"))
        await await_timeout_insert(wf, "f", run_id, Status.MIDDLE)
        s.clock.advance(timedelta(hours=1))
        for _ in range(100):
            if calls[run_id]:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # ten more polls
    assert calls == Counter({run_id: 1})
    assert (await s.store.lookup(run_id)).status == Status.MIDDLE


async def test_redelivered_event_does_not_duplicate_timeouts() -> None:
    calls: Counter[str] = Counter()
    s = Stores(clock=FakeClock())
    async with s.build(order_workflow(calls)) as wf:
        run_id = await wf.trigger("f")
        await await_timeout_insert(wf, "f", run_id, Status.MIDDLE)
        record = await s.store.lookup(run_id)
        sender = await s.streamer.new_sender("timeouts-2")
        headers = {"run_id": run_id, "record_version": str(record.meta.version)}
        await sender.send(run_id, Status.MIDDLE, headers)
        await asyncio.sleep(0.1)
        rows = await s.timeouts.list("timeouts")
    assert len(rows) == 1
    assert (rows[0].run_id, rows[0].timer, rows[0].version) == (run_id, 0, 2)


async def test_timeout_of_an_old_run_never_fires_against_a_newer_run() -> None:
    calls: Counter[str] = Counter()
    s = Stores(clock=FakeClock())
    assert s.clock is not None
    async with s.build(order_workflow(calls)) as wf:
        first = await wf.trigger("f")
        await await_timeout_insert(wf, "f", first, Status.MIDDLE)
        await wf.cancel(first, "replaced")
        second = await wf.trigger("f", start_at=Status.MIDDLE)
        s.clock.advance(timedelta(minutes=10))
        await await_timeout_insert(wf, "f", second, Status.MIDDLE)
        s.clock.advance(timedelta(minutes=25))  # first's row is due, second's is not
        await asyncio.sleep(0.15)
        assert calls == Counter()
        assert (await wf.lookup(second)).status == Status.MIDDLE
        s.clock.advance(timedelta(minutes=10))
        await wf.await_status("f", second, Status.END)
    assert calls == Counter({second: 1})


async def test_timeout_function_errors_are_counted_and_pause_the_run() -> None:
    attempts = 0

    async def start(r: Run[Obj, Status]) -> Status:
        return Status.MIDDLE

    async def failing(r: Run[Obj, Status], now: datetime) -> Status:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("downstream unavailable")

    b = Builder("timeout-errors", Obj, Status)
    b.add_step(Status.STARTED, start, Status.MIDDLE)
    b.add_timeout(
        Status.MIDDLE,
        time_timer(datetime(2020, 1, 1, tzinfo=UTC)),
        failing,
        Status.END,
        polling_frequency=timedelta(milliseconds=5),
        err_backoff=timedelta(milliseconds=5),
        pause_after_err_count=3,
    )
    s = Stores(clock=FakeClock())
    async with s.build(b) as wf:
        await wf.trigger("f")
        run = await wait_for(wf, "f", lambda r: r.run_state == RunState.PAUSED)
    assert attempts == 3
    assert "downstream unavailable" in run.meta.run_state_reason
