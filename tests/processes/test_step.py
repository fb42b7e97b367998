"""Step consumers end to end on the memory adapters."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import attrs
import pytest

from luno_wf import Builder, Run, RunState
from luno_wf._workflow import engine_of
from luno_wf.errors import WorkflowInProgress
from luno_wf.testing import require, wait_for

from ..support import FAST, Obj, Status, Stores, versions


async def test_many_runs_across_shards_run_each_step_once() -> None:
    calls: Counter[tuple[str, Status]] = Counter()

    async def step(r: Run[Obj, Status]) -> Status:
        calls[(r.run_id, r.status)] += 1
        r.object.count += 1
        return Status.MIDDLE if r.status == Status.STARTED else Status.END

    b = Builder("sharded", Obj, Status)
    b.add_step(Status.STARTED, step, Status.MIDDLE, parallel_count=4)
    b.add_step(Status.MIDDLE, step, Status.END, parallel_count=3)
    s = Stores()
    wf = s.build(b)
    async with wf:
        run_ids = [await wf.trigger(f"f{i}", initial_value=Obj(id=str(i))) for i in range(300)]
        for i, run_id in enumerate(run_ids):
            run = await wf.await_status(f"f{i}", run_id, Status.END)
            assert run.object.count == 2
            assert run.run_state == RunState.COMPLETED
            assert versions(s.store, run.record) == [1, 2, 3]
    assert len(calls) == 600
    assert set(calls.values()) == {1}
    states = wf.states()
    assert "started-consumer-4-of-4" in states and "middle-consumer-3-of-3" in states


async def test_step_errors_pause_the_run_after_the_threshold_with_the_reason() -> None:
    attempts = 0

    async def failing(r: Run[Obj, Status]) -> Status:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("payment provider down")

    b = Builder("errors", Obj, Status)
    b.add_step(Status.STARTED, failing, Status.END, pause_after_err_count=3, err_backoff=FAST)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("f")
        run = await wait_for(wf, "f", lambda r: r.run_state == RunState.PAUSED)
    assert attempts == 3
    assert run.run_id == run_id
    assert "max error retry threshold hit" in run.meta.run_state_reason
    assert "payment provider down" in run.meta.run_state_reason
    assert engine_of(wf).errors.snapshot() == {}


async def test_error_count_resets_after_a_success() -> None:
    failures = {"a": 2, "b": 2}

    async def flaky(r: Run[Obj, Status]) -> Status:
        if failures[r.foreign_id] > 0:
            failures[r.foreign_id] -= 1
            raise RuntimeError("flaky")
        return Status.END

    b = Builder("reset", Obj, Status)
    b.add_step(Status.STARTED, flaky, Status.END, pause_after_err_count=3, err_backoff=FAST)
    s = Stores()
    async with s.build(b) as wf:
        for fid in ("a", "b"):
            run_id = await wf.trigger(fid)
            run = await wf.await_status(fid, run_id, Status.END)
            assert run.run_state == RunState.COMPLETED
        # Two errors for each run, never three in a row for one run: nothing paused, and the
        # counts were forgotten once each run succeeded.
        assert engine_of(wf).errors.snapshot() == {}


async def test_invalid_transition_is_never_stored_and_pauses_the_run() -> None:
    async def wrong(r: Run[Obj, Status]) -> Status:
        return Status.OTHER  # not a declared destination

    b = Builder("invalid", Obj, Status)
    b.add_step(Status.STARTED, wrong, Status.MIDDLE)
    b.add_step(Status.MIDDLE, wrong, Status.END)
    s = Stores()
    async with s.build(b) as wf:
        await wf.trigger("f")
        run = await wait_for(wf, "f", lambda r: r.run_state == RunState.PAUSED)
    assert "InvalidTransition" in run.meta.run_state_reason
    statuses = [r.status for r in s.store.snapshots("invalid", "f", run.run_id)]
    assert Status.OTHER not in statuses
    assert statuses == [Status.STARTED, Status.STARTED]


async def test_undecodable_object_pauses_the_run(caplog: pytest.LogCaptureFixture) -> None:
    async def step(r: Run[Obj, Status]) -> Status:
        return Status.END

    b = Builder("decode", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("f", start_at=Status.STARTED)
        await wf.await_status("f", run_id, Status.END)
    # A run whose stored object no longer decodes (written by an incompatible deployment,
    # say): a fresh run is stored with garbage, and the step consumer meets it.
    b2 = Builder("decode", Obj, Status)
    b2.add_step(Status.STARTED, step, Status.END)
    async with s.build(b2) as wf2:
        bad = await wf2.trigger("g")
        stored = await s.store.lookup(bad)
        await wf2.pause(bad, "corrupting")
        paused = await s.store.lookup(bad)
        await s.store.store(
            attrs.evolve(
                paused,
                object=b"not json",
                meta=attrs.evolve(paused.meta, version=paused.meta.version + 1),
            )
        )
        await wf2.resume(bad)
        for _ in range(300):
            current = await s.store.lookup(bad)
            if (
                current.run_state == RunState.PAUSED
                and current.meta.version > stored.meta.version + 3
            ):
                break
            await asyncio.sleep(0.01)
    assert current.run_state == RunState.PAUSED
    assert "JSONDecodeError" in current.meta.run_state_reason
    assert current.status == Status.STARTED
    logged = [r for r in caplog.records if "cannot decode the object of run" in r.getMessage()]
    assert logged and all(r.levelno == logging.ERROR for r in logged)
    assert bad in logged[0].getMessage()


async def test_a_failing_step_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed = asyncio.Event()

    async def step(r: Run[Obj, Status]) -> Status:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("card declined")
        return Status.END

    b = Builder("logged", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END, err_backoff=FAST)
    async with Stores().build(b) as wf:  # debug stays off
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.END)
    errors = [r for r in caplog.records if "card declined" in r.getMessage()]
    assert errors and errors[0].levelno == logging.ERROR
    assert errors[0].exc_info is not None
    assert "RuntimeError: card declined" in caplog.text
    assert "Traceback" in caplog.text


async def test_pause_and_cancel_from_a_step() -> None:
    async def step(r: Run[Obj, Status]) -> Status:
        if r.foreign_id == "pause-me":
            return await r.pause("needs review")
        return await r.cancel("not wanted")

    b = Builder("control", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    s = Stores()
    async with s.build(b) as wf:
        p = await wf.trigger("pause-me")
        c = await wf.trigger("cancel-me")
        paused = await wait_for(wf, "pause-me", lambda r: r.run_state == RunState.PAUSED)
        cancelled = await wait_for(wf, "cancel-me", lambda r: r.run_state == RunState.CANCELLED)
    assert paused.run_id == p and paused.meta.run_state_reason == "needs review"
    assert cancelled.run_id == c and cancelled.meta.run_state_reason == "not wanted"
    assert versions(s.store, paused.record) == [1, 2]


async def test_pause_resume_and_cancel_from_the_api() -> None:
    gate = asyncio.Event()

    async def step(r: Run[Obj, Status]) -> Status:
        await gate.wait()
        return Status.END

    b = Builder("api-control", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("f")
        await wf.pause(run_id, "hold on")
        assert (await wf.lookup(run_id)).run_state == RunState.PAUSED
        gate.set()
        # The step that was already running finishes, but its write is refused (the run was
        # written by the pause meanwhile), so the run stays paused.
        await asyncio.sleep(0.05)
        assert (await wf.lookup(run_id)).run_state == RunState.PAUSED
        await wf.resume(run_id)
        done = await wf.await_status("f", run_id, Status.END)
        assert done.run_state == RunState.COMPLETED
        assert done.meta.run_state_reason == ""

        other = await wf.trigger("g")
        await wf.pause(other, "x")
        await wf.cancel(other, "changed my mind")
        assert (await wf.lookup(other)).run_state == RunState.CANCELLED
        from luno_wf.errors import UnableToResume

        with pytest.raises(UnableToResume):
            await wf.resume(other)


async def test_trigger_while_in_progress_is_refused() -> None:
    gate = asyncio.Event()

    async def step(r: Run[Obj, Status]) -> Status:
        await gate.wait()
        return Status.END

    b = Builder("in-progress", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    s = Stores()
    async with s.build(b) as wf:
        first = await wf.trigger("f")
        with pytest.raises(WorkflowInProgress) as info:
            await wf.trigger("f")
        assert info.value.foreign_id == "f"
        gate.set()
        await wf.await_status("f", first, Status.END)
        second = await wf.trigger("f")
        assert second != first
        assert (await wf.latest("f")).run_id == second


async def test_skip_and_save_and_repeat() -> None:
    async def step(r: Run[Obj, Status]) -> Status:
        r.object.count += 1
        if r.object.count < 3:
            return r.save_and_repeat()
        return Status.END

    async def never(r: Run[Obj, Status]) -> Status:
        return r.skip()

    b = Builder("repeat", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    b.add_step(Status.MIDDLE, never, Status.END)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("f")
        run = await wf.await_status("f", run_id, Status.END)
        assert run.object.count == 3
        assert versions(s.store, run.record) == [1, 2, 3, 4]
        skipped = await wf.trigger("g", start_at=Status.MIDDLE)
        await asyncio.sleep(0.05)
        assert (await wf.lookup(skipped)).meta.version == 1


async def test_required_object_and_status() -> None:
    async def step(r: Run[Obj, Status]) -> Status:
        r.object.note = "done"
        return Status.END

    b = Builder("require", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    s = Stores()
    async with s.build(b) as wf:
        await wf.trigger("f", initial_value=Obj(id="f"))
        await require(wf, "f", Status.END, Obj(id="f", note="done"))
        with pytest.raises(AssertionError, match="expected"):
            await require(wf, "f", Status.END, Obj(id="f", note="other"), timeout=0.1)


async def test_concurrency_handles_several_runs_at_once_but_never_one_run_twice() -> None:
    gate = asyncio.Event()
    in_flight: set[str] = set()
    most = 0

    async def slow(r: Run[Obj, Status]) -> Status:
        nonlocal most
        assert r.run_id not in in_flight
        in_flight.add(r.run_id)
        most = max(most, len(in_flight))
        await gate.wait()
        in_flight.discard(r.run_id)
        return Status.END

    b = Builder("concurrent", Obj, Status)
    b.add_step(Status.STARTED, slow, Status.END, concurrency=4)
    s = Stores()
    async with s.build(b) as wf:
        run_ids = [await wf.trigger(f"f{i}") for i in range(10)]
        async with asyncio.timeout(5):
            while len(in_flight) < 4:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert len(in_flight) == 4  # the limit holds while the four wait
        gate.set()
        for i, run_id in enumerate(run_ids):
            run = await wf.await_status(f"f{i}", run_id, Status.END)
            assert versions(s.store, run.record) == [1, 2]
    assert most == 4


async def test_an_error_under_concurrency_redelivers_the_unfinished_events() -> None:
    failed = False
    done: Counter[str] = Counter()

    async def step(r: Run[Obj, Status]) -> Status:
        nonlocal failed
        if r.foreign_id == "f3" and not failed:
            failed = True
            raise RuntimeError("once")
        await asyncio.sleep(0.001)
        done[r.run_id] += 1
        return Status.END

    b = Builder("concurrent-errors", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END, concurrency=3, err_backoff=FAST)
    s = Stores()
    async with s.build(b) as wf:
        run_ids = [await wf.trigger(f"f{i}") for i in range(8)]
        for i, run_id in enumerate(run_ids):
            await wf.await_status(f"f{i}", run_id, Status.END)
    assert failed
    assert set(done) == set(run_ids)


async def test_error_counts_of_a_run_stopped_elsewhere_are_dropped() -> None:
    failed = asyncio.Event()

    async def failing(r: Run[Obj, Status]) -> Status:
        failed.set()
        raise RuntimeError("down")

    b = Builder("dropped", Obj, Status)
    b.add_step(
        Status.STARTED,
        failing,
        Status.END,
        pause_after_err_count=5,
        err_backoff=timedelta(seconds=30),  # no retry during the test
    )
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("f")
        await asyncio.wait_for(failed.wait(), 5)
        await wait_until(lambda: bool(engine_of(wf).errors.snapshot()))
        assert list(engine_of(wf).errors.snapshot().values()) == [1]
        await wf.cancel(run_id, "given up by hand")
        assert engine_of(wf).errors.snapshot() == {}


async def wait_until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition not met")
