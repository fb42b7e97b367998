"""Step consumers write a received batch's results together (``BatchStore.store_many``)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

import pytest

from luno_wf import Builder, Record, Run, RunState
from luno_wf._event import Header
from luno_wf._naming import topic
from luno_wf._workflow import engine_of
from luno_wf.testing import TestingRecordStore, wait_for

from ..support import FAST, Obj, Status, Stores, versions


class CountingStore(TestingRecordStore):
    """Keeps the size of every ``store_many`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def store_many(self, records: Sequence[Record]) -> list[Exception | None]:
        self.batches.append(len(records))
        return await super().store_many(records)


async def wait_for_published(s: Stores, workflow_name: str) -> None:
    """Until the workflow's outbox is empty: every write so far has been published."""
    for _ in range(500):
        if not await s.store.list_outbox_events(workflow_name, 10):
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the outbox was not published")


async def test_a_backlog_is_written_in_batches_each_step_once() -> None:
    calls: Counter[str] = Counter()
    gate, entered = asyncio.Event(), asyncio.Event()

    async def step(r: Run[Obj, Status]) -> Status:
        if r.foreign_id == "gate":
            entered.set()
            await gate.wait()
            return Status.MIDDLE if r.status == Status.STARTED else Status.END
        calls[r.run_id] += 1
        r.object.count += 1
        return Status.MIDDLE if r.status == Status.STARTED else Status.END

    b = Builder("backlog", Obj, Status)
    b.add_step(Status.STARTED, step, Status.MIDDLE)
    b.add_step(Status.MIDDLE, step, Status.END)
    s = Stores(store=CountingStore())
    async with s.build(b) as wf:
        # While the gate run's step waits, the other runs' events pile up: a backlog.
        await wf.trigger("gate")
        await entered.wait()  # the gate run's batch is taken: the next runs form a new one
        run_ids = [await wf.trigger(f"f{i}", initial_value=Obj(id=str(i))) for i in range(100)]
        gate.set()
        for i, run_id in enumerate(run_ids):
            run = await wf.await_status(f"f{i}", run_id, Status.END)
            assert run.object.count == 2
            assert versions(s.store, run.record) == [1, 2, 3]
    assert set(calls.values()) == {2}
    store = s.store
    assert isinstance(store, CountingStore)
    assert sum(store.batches) == 202  # 100 runs and the gate run, two writes each
    assert max(store.batches) > 1, f"every write went alone: {store.batches}"
    assert len(store.batches) < 100


async def test_a_failing_step_lets_the_batch_before_it_through() -> None:
    calls: Counter[str] = Counter()
    failed = False
    gate, entered = asyncio.Event(), asyncio.Event()

    async def step(r: Run[Obj, Status]) -> Status:
        nonlocal failed
        if r.foreign_id == "gate":
            entered.set()
            await gate.wait()
            return Status.END
        calls[r.foreign_id] += 1
        if r.foreign_id == "f5" and not failed:
            failed = True
            raise RuntimeError("once")
        return Status.END

    b = Builder("failing", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END, err_backoff=FAST)
    s = Stores(store=CountingStore())
    async with s.build(b) as wf:
        await wf.trigger("gate")
        await entered.wait()  # the gate run's batch is taken: the next runs form a new one
        run_ids = [await wf.trigger(f"f{i}") for i in range(10)]
        gate.set()
        for i, run_id in enumerate(run_ids):
            run = await wf.await_status(f"f{i}", run_id, Status.END)
            assert versions(s.store, run.record) == [1, 2]
    # The runs before f5 were written when it failed, and not stepped again after the
    # restart; f5 ran twice; the rest once (after the restart).
    assert calls == {f"f{i}": 2 if i == 5 else 1 for i in range(10)}
    assert engine_of(wf).errors.snapshot() == {}


async def test_a_second_event_of_a_queued_run_waits_for_its_write() -> None:
    calls: Counter[str] = Counter()
    gate, entered = asyncio.Event(), asyncio.Event()

    async def step(r: Run[Obj, Status]) -> Status:
        if r.foreign_id == "gate":
            entered.set()
            await gate.wait()
            return Status.END
        calls[r.run_id] += 1
        return Status.END

    b = Builder("duplicates", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    s = Stores(store=CountingStore())
    async with s.build(b) as wf:
        await wf.trigger("gate")
        await entered.wait()  # the gate run's batch is taken: the next runs form a new one
        run_id = await wf.trigger("f")
        # A redelivered copy of the run's event, in the same batch as the original.
        sender = await s.streamer.new_sender(topic(wf.name, int(Status.STARTED)))
        await wait_for_published(s, wf.name)
        await sender.send(run_id, int(Status.STARTED), {Header.RECORD_VERSION: "1"})
        other = await wf.trigger("g")
        gate.set()
        await wf.await_status("f", run_id, Status.END)
        await wf.await_status("g", other, Status.END)
        record = await s.store.lookup(run_id)
    assert calls == {run_id: 1, other: 1}
    assert versions(s.store, record) == [1, 2]


async def test_a_queued_write_made_stale_meanwhile_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: Counter[str] = Counter()
    first_run: list[str] = []
    gate, entered = asyncio.Event(), asyncio.Event()

    async def step(r: Run[Obj, Status]) -> Status:
        if r.foreign_id == "gate":
            entered.set()
            await gate.wait()
            return Status.END
        calls[r.foreign_id] += 1
        if r.foreign_id == "b" and calls["b"] == 1:
            # "a" was stepped just before, in the same batch: its write is still queued.
            await wf.pause(first_run[0], "held by an operator")
        return Status.END

    b = Builder("stale", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    s = Stores(store=CountingStore())
    async with s.build(b) as wf:
        await wf.trigger("gate")
        await entered.wait()  # the gate run's batch is taken: the next runs form a new one
        first_run.append(await wf.trigger("a"))
        second = await wf.trigger("b")
        gate.set()
        await wf.await_status("b", second, Status.END)
        paused = await wait_for(wf, "a", lambda r: r.run_state == RunState.PAUSED)
        assert paused.status == Status.STARTED
        assert paused.meta.version == 2  # the pause; the queued step write was refused
        await wf.resume(first_run[0])
        done = await wf.await_status("a", first_run[0], Status.END)
    assert versions(s.store, done.record) == [1, 2, 3, 4]
    assert calls == {"a": 2, "b": 1}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "not a process error"
