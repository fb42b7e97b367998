"""Workflow lifecycle and API verbs on the memory adapters."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from luno_wf import Builder, Options, ProcessState, Run, RunState, TypedRecord
from luno_wf._workflow import engine_of
from luno_wf.errors import (
    CallbackNotAccepted,
    InvalidForeignID,
    RecordNotFound,
    RunFinished,
    UnknownStatus,
    WorkflowError,
    WorkflowNotRunning,
)
from luno_wf.testing import FakeClock, wait_for

from .support import FAST, Obj, Status, Stores, versions


async def passthrough(r: Run[Obj, Status]) -> Status:
    return Status.MIDDLE if r.status == Status.STARTED else Status.END


def two_steps(name: str = "wf") -> Builder[Obj, Status]:
    b = Builder(name, Obj, Status)
    b.add_step(Status.STARTED, passthrough, Status.MIDDLE)
    b.add_step(Status.MIDDLE, passthrough, Status.END)
    return b


async def test_states_name_every_process_and_follow_the_lifecycle() -> None:
    async def hook(r: TypedRecord[Obj, Status]) -> None:
        return None

    b = two_steps("user sign up")
    b.on_complete(hook)
    s = Stores()
    wf = s.build(b)
    assert wf.states() == {}
    async with wf:
        states = wf.states()
        assert set(states) == {
            "outbox-consumer",
            "started-consumer-1-of-1",
            "middle-consumer-1-of-1",
            "completed-run-state-change-hook-consumer",
            "delete-consumer",
            "paused-records-retry-consumer",
        }
        assert set(states.values()) <= {ProcessState.IDLE, ProcessState.RUNNING}
    assert set(wf.states().values()) == {ProcessState.SHUTDOWN}


async def test_trigger_needs_valid_input() -> None:
    s = Stores()
    wf = s.build(two_steps())
    async with wf:
        with pytest.raises(WorkflowError, match="foreign_id"):
            await wf.trigger("")
        with pytest.raises(UnknownStatus, match="terminal"):
            await wf.trigger("f", start_at=Status.END)
        with pytest.raises(UnknownStatus, match="not configured"):
            await wf.trigger("f", start_at=Status.OTHER)
        with pytest.raises(TypeError, match="initial_value must be a Obj"):
            await wf.trigger("f", initial_value="nope")
    with pytest.raises(WorkflowError, match="cannot be run again"):
        wf.run()


async def test_trigger_sets_meta_like_luno() -> None:
    s = Stores()
    async with s.build(two_steps()) as wf:
        run_id = await wf.trigger("f")
        first = s.store.snapshots("wf", "f", run_id)[0]
    assert first.meta.version == 1
    assert first.meta.status_description == "STARTED"
    assert first.run_state == RunState.INITIATED
    assert "test_workflow.py" in first.meta.trace_origin


async def test_await_status_sees_a_status_reached_before_the_call() -> None:
    s = Stores()
    async with s.build(two_steps()) as wf:
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.END)
        again = await wf.await_status("f", run_id, Status.END)
        assert again.status == Status.END
        with pytest.raises(RecordNotFound):
            await wf.await_status("someone-else", run_id, Status.END)


async def test_a_foreign_id_where_the_run_id_goes_is_reported_not_waited_for() -> None:
    s = Stores()
    async with s.build(two_steps()) as wf:
        run_id = await wf.trigger("order-1")
        await wf.await_status("order-1", run_id, Status.END)
        swapped = rf"no run has id 'order-1', but it is a foreign id .*latest run is '{run_id}'"
        with pytest.raises(RecordNotFound, match=swapped):
            async with asyncio.timeout(5):  # it used to wait for ever
                await wf.await_status(run_id, "order-1", Status.END)
        assert len(engine_of(wf).watches) == 0
        with pytest.raises(RecordNotFound, match=swapped):
            await wf.pause("order-1", "by foreign id")
        with pytest.raises(RecordNotFound, match=swapped):
            await wf.cancel("order-1", "by foreign id")
        with pytest.raises(RecordNotFound, match=swapped):
            await wf.delete_data("order-1", "by foreign id")
        with pytest.raises(RecordNotFound, match=swapped):
            await wf.lookup("order-1")
        with pytest.raises(RecordNotFound, match=r"no run has id 'nobody' \(workflow_name="):
            await wf.await_status("order-1", "nobody", Status.END)


async def test_await_status_gives_up_after_its_timeout_naming_the_run_and_status() -> None:
    gate = asyncio.Event()

    async def held(r: Run[Obj, Status]) -> Status:
        await gate.wait()
        return Status.END

    b = Builder("held", Obj, Status)
    b.add_step(Status.STARTED, held, Status.END)
    async with Stores().build(b) as wf:
        run_id = await wf.trigger("f")
        expected = (
            rf"timed out after 0:00:00.050000 waiting for run '{run_id}' of 'f' in workflow "
            r"'held' to reach <Status.END: 3>"
        )
        with pytest.raises(TimeoutError, match=expected):
            await wf.await_status("f", run_id, Status.END, timeout=timedelta(milliseconds=50))
        assert len(engine_of(wf).watches) == 0
        gate.set()
        run = await wf.await_status("f", run_id, Status.END, timeout=timedelta(seconds=5))
        assert run.status == Status.END


async def test_await_status_raises_when_the_run_finishes_elsewhere() -> None:
    gate = asyncio.Event()

    async def slow(r: Run[Obj, Status]) -> Status:
        await gate.wait()
        return Status.END

    b = Builder("finish", Obj, Status)
    b.add_step(Status.STARTED, slow, Status.END)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("f")
        waiter = asyncio.create_task(wf.await_status("f", run_id, Status.END))
        await asyncio.sleep(0.01)
        await wf.cancel(run_id, "no")
        with pytest.raises(RunFinished, match="Cancelled"):
            await waiter
        gate.set()


async def test_stop_mid_flight_then_a_fresh_workflow_finishes_every_run() -> None:
    calls: Counter[tuple[str, int]] = Counter()

    async def slow(r: Run[Obj, Status]) -> Status:
        calls[(r.run_id, r.meta.version)] += 1
        await asyncio.sleep(0.002)
        r.object.count += 1
        return Status.MIDDLE if r.status == Status.STARTED else Status.END

    def build() -> Builder[Obj, Status]:
        b = Builder("restart", Obj, Status)
        b.add_step(Status.STARTED, slow, Status.MIDDLE, parallel_count=2)
        b.add_step(Status.MIDDLE, slow, Status.END, parallel_count=2)
        return b

    s = Stores()
    wf = s.build(build())
    await wf.__aenter__()
    run_ids = [await wf.trigger(f"f{i}") for i in range(60)]
    await asyncio.sleep(0.03)
    await wf.stop()
    unfinished = [
        r for r in await s.store.list("restart", limit=100) if r.run_state != RunState.COMPLETED
    ]
    assert unfinished, "stop() came too late to interrupt anything; the test proves nothing"

    async with s.build(build()) as again:
        for i, run_id in enumerate(run_ids):
            run = await again.await_status(f"f{i}", run_id, Status.END)
            assert run.object.count == 2
            # Every write bumped the version by exactly one: nothing was applied twice.
            assert versions(s.store, run.record) == [1, 2, 3]


async def test_hooks_see_completed_paused_and_cancelled_runs() -> None:
    seen: list[tuple[str, RunState]] = []

    async def hook(r: TypedRecord[Obj, Status]) -> None:
        seen.append((r.foreign_id, r.run_state))

    async def step(r: Run[Obj, Status]) -> Status:
        if r.foreign_id == "p":
            return await r.pause("p")
        if r.foreign_id == "c":
            return await r.cancel("c")
        return Status.END

    b = Builder("hooks", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    b.on_complete(hook)
    b.on_pause(hook)
    b.on_cancel(hook)
    s = Stores()
    async with s.build(b) as wf:
        for fid in ("done", "p", "c"):
            await wf.trigger(fid)
        for _ in range(200):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.01)
    assert sorted(seen) == [
        ("c", RunState.CANCELLED),
        ("done", RunState.COMPLETED),
        ("p", RunState.PAUSED),
    ]


async def test_failing_hook_is_retried_and_does_not_block_other_hooks() -> None:
    attempts = Counter[str]()

    async def always_failing(r: TypedRecord[Obj, Status]) -> None:
        attempts["complete"] += 1
        raise RuntimeError("hook down")

    async def on_cancel(r: TypedRecord[Obj, Status]) -> None:
        attempts["cancel"] += 1

    b = two_steps("hook-retry")
    b.on_complete(always_failing)
    b.on_cancel(on_cancel)
    s = Stores()
    async with s.build(b, default_options=Options(err_backoff=FAST)) as wf:
        done = await wf.trigger("a")
        await wf.await_status("a", done, Status.END)
        other = await wf.trigger("b")
        await wf.cancel(other, "x")
        for _ in range(300):
            if attempts["complete"] >= 3 and attempts["cancel"]:
                break
            await asyncio.sleep(0.01)
    assert attempts["complete"] >= 3  # retried with back-off, never given up
    assert attempts["cancel"] == 1  # the cancel hook ran meanwhile


async def test_delete_data_replaces_the_object_and_keeps_the_record() -> None:
    async def scrub(obj: Obj) -> Obj:
        return Obj(id=obj.id, note="scrubbed")

    s = Stores()
    async with s.build(two_steps("gdpr"), custom_delete=scrub) as wf:
        run_id = await wf.trigger("f", initial_value=Obj(id="f", note="secret"))
        await wf.await_status("f", run_id, Status.END)
        await wf.delete_data(run_id, "user asked")
        for _ in range(200):
            record = await s.store.lookup(run_id)
            if record.run_state == RunState.DATA_DELETED:
                break
            await asyncio.sleep(0.01)
        deleted = await wf.lookup(run_id)
    assert deleted.run_state == RunState.DATA_DELETED
    assert deleted.object == Obj(id="f", note="scrubbed")
    assert deleted.meta.run_state_reason == "user asked"
    assert b"secret" not in record.object


async def test_paused_runs_are_retried_after_pause_retry() -> None:
    clock = FakeClock()
    failures = 1

    async def step(r: Run[Obj, Status]) -> Status:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("transient")
        return Status.END

    b = Builder("retry", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END, pause_after_err_count=1)
    s = Stores(clock=clock)
    async with s.build(b, pause_retry=timedelta(hours=1)) as wf:
        run_id = await wf.trigger("f")
        await wait_for(wf, "f", lambda r: r.run_state == RunState.PAUSED)
        await asyncio.sleep(0.05)
        assert (await wf.lookup(run_id)).run_state == RunState.PAUSED
        clock.advance(timedelta(hours=1))
        run = await wf.await_status("f", run_id, Status.END)
    assert run.run_state == RunState.COMPLETED
    assert [r.run_state for r in s.store.snapshots("retry", "f", run_id)] == [
        RunState.INITIATED,
        RunState.PAUSED,
        RunState.RUNNING,
        RunState.COMPLETED,
    ]


async def test_stale_events_are_skipped() -> None:
    calls = Counter[int]()

    async def step(r: Run[Obj, Status]) -> Status:
        calls[r.meta.version] += 1
        return Status.END

    b = Builder("stale", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.END)
        # Replay the trigger's event (version 1) as a duplicate delivery would.
        sender = await s.streamer.new_sender("stale-1")
        await sender.send(
            run_id, Status.STARTED, {"run_id": run_id, "record_version": "1", "topic": "stale-1"}
        )
        await asyncio.sleep(0.05)
    assert calls == Counter({1: 1})


async def test_api_verbs_work_without_run() -> None:
    # A web handler or a script builds the workflow and starts runs; a worker moves them.
    s = Stores()
    gate = asyncio.Event()

    async def wait_for_gate(r: Run[Obj, Status]) -> Status:
        await gate.wait()
        return Status.END

    async def accept(r: Run[Obj, Status], payload: bytes) -> Status:
        r.object.note = payload.decode()
        return Status.MIDDLE

    def build() -> Builder[Obj, Status]:
        b = Builder("api-only", Obj, Status)
        b.add_callback(Status.STARTED, accept, Status.MIDDLE)
        b.add_step(Status.MIDDLE, wait_for_gate, Status.END)
        return b

    api = s.build(build())
    assert not api.running
    run_id = await api.trigger("f")
    assert (await api.lookup(run_id)).status == Status.STARTED
    assert (await api.latest("f")).run_id == run_id
    await api.callback("f", Status.STARTED, b"hello")
    await api.pause(run_id, "checking")
    assert (await api.lookup(run_id)).run_state == RunState.PAUSED
    await api.resume(run_id)
    async with s.build(build()) as worker:
        gate.set()
        run = await api.await_status("f", run_id, Status.END, poll_interval=FAST)
        assert run.object.note == "hello"
        assert worker.running and not api.running
    second = await api.trigger("g")
    await api.cancel(second, "not needed")
    assert (await api.lookup(second)).run_state == RunState.CANCELLED
    with pytest.raises(WorkflowNotRunning, match="schedule failed"):
        await api.schedule("h", "@daily")


async def test_stop_lets_a_running_step_finish_and_write_before_the_role_goes() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    calls = Counter[str]()

    async def slow(r: Run[Obj, Status]) -> Status:
        calls[r.run_id] += 1
        entered.set()
        await release.wait()
        return Status.END

    def build() -> Builder[Obj, Status]:
        b = Builder("drain", Obj, Status)
        b.add_step(Status.STARTED, slow, Status.END)
        return b

    s = Stores()
    wf = s.build(build())
    await wf.__aenter__()
    run_id = await wf.trigger("f")
    await entered.wait()
    stopping = asyncio.create_task(wf.stop(timeout=timedelta(seconds=10)))
    await asyncio.sleep(0.05)
    assert not stopping.done(), "stop() did not wait for the step in flight"
    release.set()
    await stopping
    record = await s.store.lookup(run_id)
    assert (record.status, record.run_state) == (Status.END, RunState.COMPLETED)
    assert set(wf.states().values()) == {ProcessState.SHUTDOWN}
    assert not s.scheduler.holds("drain-1-consumer-1-of-1")
    # The event was acked with its write: a new worker does not run the step again.
    async with s.build(build()) as again:
        await again.await_status("f", run_id, Status.END)
        await asyncio.sleep(0.05)
    assert calls == {run_id: 1}


async def test_stop_cancels_work_still_running_after_its_timeout() -> None:
    entered = asyncio.Event()

    async def stuck(r: Run[Obj, Status]) -> Status:
        entered.set()
        await asyncio.sleep(3600)
        return Status.END

    b = Builder("stuck", Obj, Status)
    b.add_step(Status.STARTED, stuck, Status.END)
    s = Stores()
    wf = s.build(b)
    await wf.__aenter__()
    run_id = await wf.trigger("f")
    await entered.wait()
    async with asyncio.timeout(5):
        await wf.stop(timeout=timedelta(milliseconds=100))
    assert (await s.store.lookup(run_id)).status == Status.STARTED
    assert set(wf.states().values()) == {ProcessState.SHUTDOWN}


async def test_a_pause_someone_asked_for_is_not_retried() -> None:
    clock = FakeClock()
    b = two_steps("manual-pause")
    s = Stores(clock=clock)
    async with s.build(b, pause_retry=timedelta(hours=1)) as wf:
        run_id = await wf.trigger("f", start_at=Status.MIDDLE)
        await wf.pause(run_id, "fraud check")
        await asyncio.sleep(0.05)
        clock.advance(timedelta(hours=2))
        await asyncio.sleep(0.1)
        record = await wf.lookup(run_id)
    assert record.run_state == RunState.PAUSED
    assert record.meta.run_state_reason == "fraud check"


@pytest.mark.parametrize(
    ("foreign_id", "message"),
    [
        ("", "non-empty"),
        ("   ", "whitespace"),
        ("a" * 256, "256 characters long; the limit is 255"),
        ("a\x00b", "NUL"),
        (7, "must be a string"),
    ],
)
async def test_foreign_ids_every_store_can_keep(foreign_id: object, message: str) -> None:
    s = Stores()
    wf = s.build(two_steps())
    with pytest.raises(InvalidForeignID, match=message):
        await wf.trigger(foreign_id)
    with pytest.raises(InvalidForeignID, match=message):
        await wf.latest(foreign_id)
    assert await wf.trigger("a" * 255)


async def test_a_callback_can_name_its_run() -> None:
    async def accept(r: Run[Obj, Status], payload: bytes) -> Status:
        return Status.END

    b = Builder("callback-run", Obj, Status)
    b.add_callback(Status.STARTED, accept, Status.END)
    s = Stores()
    wf = s.build(b)
    first = await wf.trigger("f")
    await wf.cancel(first, "superseded")
    second = await wf.trigger("f")
    other = await wf.trigger("g")
    with pytest.raises(CallbackNotAccepted, match=r"the run is at .* \(Cancelled\)"):
        await wf.callback("f", Status.STARTED, b"{}", run_id=first)
    with pytest.raises(RecordNotFound, match="not a run of foreign id 'f'"):
        await wf.callback("f", Status.STARTED, b"{}", run_id=other)
    await wf.callback("f", Status.STARTED, b"{}", run_id=second)
    assert (await wf.lookup(second)).status == Status.END
