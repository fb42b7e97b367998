"""Schedules over a simulated day, with the fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from luno_wf import Builder, ProcessState, Run, Workflow, make_role
from luno_wf._processes.schedule import parse_tick
from luno_wf.errors import WorkflowNotRunning
from luno_wf.testing import FakeClock

from ..support import Obj, Status, Stores

SPEC = "0 */3 * * *"
START = datetime(2025, 1, 1, tzinfo=UTC)


def report_workflow() -> Builder[Obj, Status]:
    async def build_report(r: Run[Obj, Status]) -> Status:
        return Status.END

    b = Builder("reports", Obj, Status)
    b.add_step(Status.STARTED, build_report, Status.END)
    return b


async def scheduled_ticks(s: Stores) -> list[datetime]:
    ticks = []
    for record in await s.store.list("reports", limit=1000):
        tick = parse_tick(record.meta.trace_origin, SPEC)
        if tick is not None:
            ticks.append(tick)
    return ticks


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    async with asyncio.timeout(10):
        while not await condition():
            await asyncio.sleep(0.005)


async def start_schedule(
    wf: Workflow[Obj, Status], clock: FakeClock, **options: Any
) -> asyncio.Task[None]:
    task = asyncio.create_task(wf.schedule("daily-report", SPEC, **options))
    name = make_role("daily-report", "scheduler", SPEC)

    async def waiting_for_its_tick() -> bool:
        return wf.states().get(name) == ProcessState.RUNNING and clock.sleepers == 1

    await until(waiting_for_its_tick, "the schedule to wait for its next tick")
    return task


async def advance_hours(clock: FakeClock, s: Stores, until_time: datetime) -> None:
    while clock.now() < until_time:
        expected = len(await scheduled_ticks(s))
        clock.advance(timedelta(hours=1))
        if clock.now().hour % 3 == 0:
            expected += 1

        async def tick_done(expected: int = expected) -> bool:
            runs = await s.store.list("reports", limit=1000)
            return (
                len(await scheduled_ticks(s)) == expected
                and all(r.status == Status.END for r in runs)
                and clock.sleepers == 1  # the schedule waits for its next tick again
            )

        await until(tick_done, f"the tick of {clock.now()}")


async def test_a_simulated_day_fires_exactly_the_expected_ticks_across_a_restart() -> None:
    clock = FakeClock(START)
    s = Stores(clock=clock)

    wf = s.build(report_workflow())
    async with wf:
        task = await start_schedule(wf, clock)
        await advance_hours(clock, s, START + timedelta(hours=10))
        # A manual trigger in between does not move the schedule.
        manual = await wf.trigger("daily-report")
        await wf.await_status("daily-report", manual, Status.END)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    again = s.build(report_workflow())
    async with again:
        task = await start_schedule(again, clock)
        await advance_hours(clock, s, START + timedelta(hours=24))
    await task  # the schedule returns when its workflow stops

    ticks = await scheduled_ticks(s)
    assert ticks == [START + timedelta(hours=h) for h in range(3, 25, 3)]
    assert len(await s.store.list("reports", limit=1000)) == len(ticks) + 1


async def test_schedule_needs_a_running_workflow_and_a_valid_spec() -> None:
    s = Stores()
    wf = s.build(report_workflow())
    with pytest.raises(WorkflowNotRunning, match="schedule failed"):
        await wf.schedule("x", SPEC)
    async with wf:
        with pytest.raises(ValueError, match="invalid cron expression"):
            await wf.schedule("x", "every tuesday")


async def test_filter_skips_ticks() -> None:
    clock = FakeClock(START)
    s = Stores(clock=clock)
    answers = [False, True, False]
    asked: list[datetime] = []

    async def only_some() -> bool:
        asked.append(clock.now())
        return answers[len(asked) - 1]

    wf = s.build(report_workflow())
    async with wf:
        task = await start_schedule(wf, clock, filter=only_some)
        for n in range(1, 4):
            clock.advance(timedelta(hours=3))

            async def answered(n: int = n) -> bool:
                return len(asked) == n and clock.sleepers == 1

            await until(answered, f"the filter to be asked {n} times")
        task.cancel()
    ticks = await scheduled_ticks(s)
    assert ticks == [START + timedelta(hours=6)]
    assert asked == [START + timedelta(hours=h) for h in (3, 6, 9)]
    (run,) = await s.store.list("reports")
    first = (await s.store.history(run.run_id))[0]
    assert first.actor == f"schedule:{SPEC}"  # the trigger's write names the schedule
