from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from luno_wf import Builder, Meta, Record, Run, RunState
from luno_wf._run import RUN_STATE_UPDATED
from luno_wf.testing import FakeClock, TestingRecordStore, new_testing_run, trigger_callback_on

from .support import Obj, Status, Stores

NOW = datetime(2025, 1, 1, tzinfo=UTC)


async def test_fake_clock_wakes_sleepers_only_when_due() -> None:
    clock = FakeClock(NOW)
    woke: list[str] = []

    async def sleeper(name: str, delay: timedelta) -> None:
        await clock.sleep_until(NOW + delay)
        woke.append(name)

    tasks = [
        asyncio.create_task(sleeper("a", timedelta(minutes=5))),
        asyncio.create_task(sleeper("b", timedelta(minutes=1))),
    ]
    await asyncio.sleep(0)
    clock.advance(timedelta(minutes=2))
    await asyncio.sleep(0)
    assert woke == ["b"]
    clock.advance(timedelta(minutes=3))
    await asyncio.gather(*tasks)
    assert woke == ["b", "a"]
    assert clock.now() == NOW + timedelta(minutes=5)
    with pytest.raises(ValueError, match="back in time"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2025, 1, 1))


def record(version: int = 1) -> Record:
    return Record(
        workflow_name="wf",
        foreign_id="f",
        run_id="r",
        run_state=RunState.RUNNING,
        status=Status.STARTED,
        object=b"{}",
        created_at=NOW,
        updated_at=NOW,
        meta=Meta(version=version),
    )


async def test_testing_store_keeps_every_version() -> None:
    store = TestingRecordStore()
    await store.store(record(1))
    await store.store(record(2))
    assert [r.meta.version for r in store.snapshots("wf", "f", "r")] == [1, 2]
    assert store.snapshots("wf", "f", "other") == []


async def test_new_testing_run_lets_a_step_be_unit_tested() -> None:
    paused: list[str] = []

    async def on_pause(reason: str) -> None:
        paused.append(reason)

    async def step(r: Run[Obj, Status]) -> Status:
        if r.object.count > 3:
            return await r.pause("too many")
        r.object.count += 1
        return Status.MIDDLE

    run = new_testing_run(record(), Obj(count=1), Status, on_pause=on_pause)
    assert await step(run) == Status.MIDDLE
    assert run.object.count == 2
    busy = new_testing_run(record(), Obj(count=5), Status, on_pause=on_pause)
    assert int(await step(busy)) == int(RUN_STATE_UPDATED) == -1
    assert paused == ["too many"]


@attrs.define
class Paid:
    note: str


async def test_trigger_callback_on_sends_bytes_as_is_objects_as_json_and_refuses_str() -> None:
    payloads: list[bytes] = []

    async def start(r: Run[Obj, Status]) -> Status:
        return Status.MIDDLE

    async def confirm(r: Run[Obj, Status], payload: bytes) -> Status:
        payloads.append(payload)
        return Status.END if len(payloads) == 2 else r.skip()

    b = Builder("callback-payloads", Obj, Status)
    b.add_step(Status.STARTED, start, Status.MIDDLE)
    b.add_callback(Status.MIDDLE, confirm, Status.END)
    async with Stores().build(b) as wf:
        run_id = await wf.trigger("f")
        with pytest.raises(TypeError, match=r"str payload 'paid': pass bytes .*payload\.encode"):
            await trigger_callback_on(wf, "f", run_id, Status.MIDDLE, "paid")  # type: ignore[arg-type]
        await trigger_callback_on(wf, "f", run_id, Status.MIDDLE, b"raw")
        await trigger_callback_on(wf, "f", run_id, Status.MIDDLE, Paid(note="x"))
        await wf.await_status("f", run_id, Status.END)
    assert payloads[0] == b"raw"
    assert json.loads(payloads[1]) == {"note": "x"}
