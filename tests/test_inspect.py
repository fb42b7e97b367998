"""``wf.inspect``: the fields of a run's report and its text."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import attrs

from luno_wf import Builder, Inspection, Meta, Record, Run, RunState, duration_timer
from luno_wf._inspect import OUTBOX_SCAN
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer, MemTimeoutStore

from .support import FAST, Obj, Status, Stores

T0 = datetime(2025, 1, 1, tzinfo=UTC)


async def to_middle(r: Run[Obj, Status]) -> Status:
    return Status.MIDDLE


async def end(r: Run[Obj, Status], now: datetime) -> Status:
    return Status.END


def waiting(name: str = "inspected", parallel_count: int | None = None) -> Builder[Obj, Status]:
    b = Builder(name, Obj, Status)
    b.add_step(Status.STARTED, to_middle, Status.MIDDLE, parallel_count=parallel_count)
    b.add_timeout(Status.MIDDLE, duration_timer(timedelta(hours=1)), end, Status.END)
    return b


async def test_report_of_a_run_waiting_for_its_timeout() -> None:
    s = Stores()
    async with s.build(waiting()) as wf:
        run_id = await wf.trigger("i-1", initial_value=Obj(id="i-1", note="fragile"))
        await wf.await_status("i-1", run_id, Status.MIDDLE)
        while not await s.timeouts.list("inspected"):
            await asyncio.sleep(0.005)
        report = await wf.inspect(run_id)
    assert isinstance(report, Inspection)
    assert report.record is not None
    assert report.record.status == Status.MIDDLE
    assert report.record.object == Obj(id="i-1", note="fragile")
    assert report.stored.meta.version == 2
    assert [t.actor for t in report.history] == ["api", "step:STARTED"]
    assert [(t.run_id, t.status) for t in report.timeouts] == [(run_id, Status.MIDDLE)]
    assert report.error_counts == {}
    assert report.role == "inspected-2-timeout-consumer (timeouts)"
    assert report.roles == {"inspected-2-timeout-consumer": "held by this process"}
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == f"Run {run_id} of workflow 'inspected' (foreign id 'i-1')"
    assert "  status:     MIDDLE (2)" in lines
    assert "  run state:  Running" in lines
    assert '"note":"fragile"' in text
    assert "History (oldest first):" in lines
    header = lines.index("History (oldest first):") + 1
    columns = ["version", "status", "run", "state", "actor", "reason", "error", "at"]
    assert lines[header].split() == columns
    assert lines[header + 1].split()[:4] == ["1", "STARTED", "Initiated", "api"]
    assert lines[header + 2].split()[:4] == ["2", "MIDDLE", "Running", "step:STARTED"]
    assert any(line.startswith("  #") and "at status 2" in line for line in lines)
    assert "Errors in this process: none" in lines
    assert "  inspected-2-timeout-consumer: held by this process" in lines


async def test_report_of_a_run_not_yet_moved() -> None:
    s = Stores()
    wf = s.build(waiting("unmoved", parallel_count=2))
    run_id = await wf.trigger("u")  # no run(): nothing publishes or moves it
    report = await wf.inspect(run_id)
    assert report.outbox_pending
    assert report.role == (
        "one of unmoved-1-consumer-1-of-2, unmoved-1-consumer-2-of-2 (chosen by event id)"
    )
    assert report.roles == {
        "unmoved-1-consumer-1-of-2": "not held by any process",
        "unmoved-1-consumer-2-of-2": "not held by any process",
    }
    text = str(report)
    assert "Outbox: an event of the run is not yet published" in text
    assert "Timeouts: none" in text


class Opaque:
    """A role scheduler that cannot tell who holds a role (no ``holds``)."""

    def __init__(self) -> None:
        self._inner = MemRoleScheduler()

    def await_role(self, role: str) -> AbstractAsyncContextManager[None]:
        return self._inner.await_role(role)


async def test_report_of_a_failing_run_counts_its_errors() -> None:
    async def failing(r: Run[Obj, Status]) -> Status:
        raise RuntimeError("still broken")

    b = Builder("failing", Obj, Status)
    b.add_step(Status.STARTED, failing, Status.END, err_backoff=FAST)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("f")
        report = await wf.inspect(run_id)
        while not report.error_counts:
            await asyncio.sleep(0.005)
            report = await wf.inspect(run_id)
    assert set(report.error_counts) == {"started-consumer-1-of-1"}
    assert "Errors in this process:\n  started-consumer-1-of-1: " in str(report)
    quiet = b.build(MemStreamer(), s.store, Opaque())
    assert (await quiet.inspect(run_id)).roles == {
        "failing-1-consumer-1-of-1": "not held by this process"
    }


async def test_report_of_a_run_whose_object_does_not_decode() -> None:
    store = MemRecordStore()
    wf = waiting("broken").build(
        MemStreamer(), store, MemRoleScheduler(), timeout_store=MemTimeoutStore()
    )
    record = Record(
        workflow_name="broken",
        foreign_id="b",
        run_id="run-b",
        run_state=RunState.PAUSED,
        status=int(Status.STARTED),
        object=b'{"count": "many"}',
        created_at=T0,
        updated_at=T0,
        meta=Meta(version=1, run_state_reason="hold", actor="operator:alice", error="X: y"),
    )
    await store.store(record)
    report = await wf.inspect("run-b")
    assert report.record is None
    assert report.stored == record
    assert any(note.startswith("object does not decode as Obj") for note in report.notes)
    assert any("Paused: nothing moves it until it is resumed" in note for note in report.notes)
    text = str(report)
    assert "  status:     1" in text
    assert "  run state:  Paused - hold" in text
    assert "  error:      X: y" in text
    assert '{"count": "many"}' in text


async def test_report_of_a_finished_run_and_a_long_object() -> None:
    s = Stores()
    async with s.build(waiting("finished")) as wf:
        run_id = await wf.trigger("l", initial_value=Obj(id="l", note="x" * 5000))
        await wf.await_status("l", run_id, Status.MIDDLE)
        await wf.cancel(run_id, "no longer needed")
        report = await wf.inspect(run_id)
    assert report.role == "" and report.roles == {}
    assert "the run is Cancelled: nothing moves it any more" in report.notes
    text = str(report)
    assert "Role: none" in text
    assert "... (" in text and len(text) < 3000


async def test_the_outbox_scan_is_bounded() -> None:
    s = Stores()
    wf = s.build(waiting("busy"))
    first = await wf.trigger("first")
    for n in range(OUTBOX_SCAN):
        await wf.trigger(f"f-{n}")
    last = await wf.trigger("last")
    assert (await wf.inspect(first)).outbox_pending
    report = await wf.inspect(last)
    assert not report.outbox_pending
    assert any(f"more than {OUTBOX_SCAN} unpublished rows" in note for note in report.notes)
    assert attrs.evolve(report, notes=[]).notes == []
