"""Compensation: ``add_compensation`` and ``wf.compensate`` on the memory adapters."""

from __future__ import annotations

import asyncio
import enum
from datetime import timedelta

import attrs
import pytest

from luno_wf import Builder, Run, RunState, TypedRecord, Workflow
from luno_wf._processes.pauseretry import paused_after_errors
from luno_wf._workflow import engine_of
from luno_wf.errors import (
    HistoryNotKept,
    InvalidRunStateTransition,
    UnableToCompensate,
    UnknownStatus,
    WorkflowError,
)
from luno_wf.testing import FakeClock, wait_for

from .support import FAST, Stores


class Saga(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    RESERVED = 2
    CHARGED = 3
    SHIPPED = 4


@attrs.define
class Order:
    id: str = ""
    undone: list[str] = attrs.field(factory=list)


async def reserve(r: Run[Order, Saga]) -> Saga:
    return Saga.RESERVED


async def charge(r: Run[Order, Saga]) -> Saga:
    return Saga.CHARGED


async def ship(r: Run[Order, Saga]) -> Saga:
    raise RuntimeError("no courier")


class Undo:
    """Compensation functions that note each call; ``fail`` names statuses failing once."""

    def __init__(self, fail: tuple[Saga, ...] = ()) -> None:
        self.calls: list[Saga] = []
        self.fail = set(fail)

    async def __call__(self, r: Run[Order, Saga]) -> None:
        self.calls.append(r.status)
        assert r.run_state == RunState.PAUSED
        if r.status in self.fail:
            self.fail.discard(r.status)
            raise RuntimeError(f"cannot undo {r.status.name} yet")
        r.object.undone.append(r.status.name)


def saga(undo: Undo, name: str = "saga") -> Builder[Order, Saga]:
    b = Builder(name, Order, Saga)
    b.add_step(Saga.CREATED, reserve, Saga.RESERVED)
    b.add_step(Saga.RESERVED, charge, Saga.CHARGED)
    b.add_step(Saga.CHARGED, ship, Saga.SHIPPED, pause_after_err_count=1, err_backoff=FAST)
    for status in (Saga.CREATED, Saga.RESERVED, Saga.CHARGED):
        b.add_compensation(status, undo)
    return b


async def failed_order(wf: Workflow[Order, Saga], foreign_id: str = "o-1") -> str:
    run_id = await wf.trigger(foreign_id, initial_value=Order(id=foreign_id))
    await wait_for(wf, foreign_id, lambda r: r.run_state == RunState.PAUSED)
    return run_id


async def test_compensators_run_newest_first_and_the_run_ends_cancelled() -> None:
    undo = Undo()
    s = Stores()
    async with s.build(saga(undo)) as wf:
        run_id = await failed_order(wf)
        await wf.compensate(run_id, "courier strike")
        final = await wf.lookup(run_id)
        history = await wf.history(run_id)
    assert undo.calls == [Saga.CHARGED, Saga.RESERVED, Saga.CREATED]
    assert final.run_state == RunState.CANCELLED
    assert final.meta.run_state_reason == "courier strike"
    assert final.object.undone == ["CHARGED", "RESERVED", "CREATED"]  # changes are stored
    tail = [(t.run_state, t.actor, t.reason) for t in history[4:]]
    assert tail == [
        (RunState.PAUSED, "compensate", "compensating: courier strike"),
        (RunState.PAUSED, "compensated:3", "compensating: courier strike"),
        (RunState.PAUSED, "compensated:2", "compensating: courier strike"),
        (RunState.PAUSED, "compensated:1", "compensating: courier strike"),
        (RunState.CANCELLED, "compensate", "courier strike"),
    ]
    assert history[3].actor == "step:CHARGED" and history[3].error.startswith("RuntimeError")


async def test_to_stops_before_the_status_named() -> None:
    undo = Undo()
    s = Stores()
    async with s.build(saga(undo)) as wf:
        run_id = await failed_order(wf)
        await wf.compensate(run_id, "partial", to=Saga.RESERVED, actor="operator:alice")
        history = await wf.history(run_id)
        assert undo.calls == [Saga.CHARGED]
        other = await failed_order(wf, "o-2")
        with pytest.raises(ValueError, match="never entered SHIPPED"):
            await wf.compensate(other, "too far", to=Saga.SHIPPED)
        with pytest.raises(UnknownStatus):
            await wf.compensate(other, "not a status", to=7)
        assert (await wf.lookup(other)).meta.actor == "step:CHARGED"  # nothing was written
    assert [t.actor for t in history][-3:] == ["operator:alice", "compensated:3", "operator:alice"]


async def test_a_failed_compensation_resumes_without_rerunning_what_was_done() -> None:
    undo = Undo(fail=(Saga.RESERVED,))
    s = Stores()
    async with s.build(saga(undo)) as wf:
        run_id = await failed_order(wf)
        with pytest.raises(RuntimeError, match="cannot undo RESERVED yet"):
            await wf.compensate(run_id, "refund")
        stuck = await wf.lookup(run_id)
        assert stuck.run_state == RunState.PAUSED
        assert stuck.meta.run_state_reason == "compensating: refund"
        assert not paused_after_errors(stuck.record)  # the paused-run retry leaves it alone
        await wf.compensate(run_id, "refund, second try")
        final = await wf.lookup(run_id)
    # CHARGED was done before the failure and is not undone again; RESERVED is retried.
    assert undo.calls == [Saga.CHARGED, Saga.RESERVED, Saga.RESERVED, Saga.CREATED]
    assert final.run_state == RunState.CANCELLED
    assert final.object.undone == ["CHARGED", "RESERVED", "CREATED"]


async def test_a_compensation_pause_is_never_retried() -> None:
    clock = FakeClock()
    undo = Undo(fail=(Saga.CHARGED,))
    s = Stores(clock=clock)
    async with s.build(saga(undo), pause_retry=timedelta(hours=1)) as wf:
        run_id = await failed_order(wf)
        with pytest.raises(RuntimeError):
            await wf.compensate(run_id, "refund")
        await asyncio.sleep(0.05)
        clock.advance(timedelta(hours=2))
        await asyncio.sleep(0.1)
        record = await wf.lookup(run_id)
    assert record.run_state == RunState.PAUSED
    assert record.meta.run_state_reason == "compensating: refund"


async def test_only_running_or_paused_runs_are_compensated() -> None:
    undo = Undo()
    b = Builder("done", Order, Saga)
    b.add_step(Saga.CREATED, reserve, Saga.RESERVED)
    b.add_compensation(Saga.CREATED, undo)
    s = Stores()
    async with s.build(b) as wf:
        completed = await wf.trigger("c")
        await wf.await_status("c", completed, Saga.RESERVED)
        cancelled = await wf.trigger("x")
        await wf.cancel(cancelled, "gone")
        for run_id, state in ((completed, "Completed"), (cancelled, "Cancelled")):
            with pytest.raises(UnableToCompensate, match=f"that is {state}"):
                await wf.compensate(run_id, "too late")
        assert issubclass(UnableToCompensate, InvalidRunStateTransition)
    assert undo.calls == []


async def test_compensation_writes_do_not_call_on_pause_again() -> None:
    paused: list[str] = []
    cancelled: list[str] = []

    async def on_pause(r: TypedRecord[Order, Saga]) -> None:
        paused.append(r.meta.run_state_reason)

    async def on_cancel(r: TypedRecord[Order, Saga]) -> None:
        cancelled.append(r.meta.run_state_reason)

    b = saga(Undo(), "hooked")
    b.on_pause(on_pause)
    b.on_cancel(on_cancel)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await failed_order(wf)
        while not paused:
            await asyncio.sleep(0.005)
        await wf.compensate(run_id, "refund")
        while not cancelled:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)  # time for the progress writes' events to reach the hooks
    assert len(paused) == 1 and paused[0].startswith("max error retry threshold hit")
    assert cancelled == ["refund"]


async def test_a_running_run_is_paused_first_and_compensated() -> None:
    undo = Undo()

    async def paid(r: Run[Order, Saga], payload: bytes) -> Saga:
        return Saga.CHARGED

    b = Builder("waiting", Order, Saga)
    b.add_step(Saga.CREATED, reserve, Saga.RESERVED)
    b.add_callback(Saga.RESERVED, paid, Saga.CHARGED)
    b.add_compensation(Saga.RESERVED, undo)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("w", initial_value=Order(id="w"))
        await wf.await_status("w", run_id, Saga.RESERVED)
        await wf.compensate(run_id, "customer cancelled")
        history = await wf.history(run_id)
    assert undo.calls == [Saga.RESERVED]
    assert [(t.run_state, t.actor) for t in history] == [
        (RunState.INITIATED, "api"),
        (RunState.RUNNING, "step:CREATED"),
        (RunState.PAUSED, "compensate"),
        (RunState.PAUSED, "compensated:2"),
        (RunState.CANCELLED, "compensate"),
    ]


async def test_concurrent_calls_in_one_process_take_turns() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls: list[Saga] = []

    async def slow(r: Run[Order, Saga]) -> None:
        calls.append(r.status)
        started.set()
        await release.wait()

    b = saga(Undo(), "turns")
    b.compensations.clear()
    b.add_compensation(Saga.CHARGED, slow)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await failed_order(wf)
        first = asyncio.create_task(wf.compensate(run_id, "one"))
        await started.wait()
        second = asyncio.create_task(wf.compensate(run_id, "two"))
        await asyncio.sleep(0.02)
        release.set()
        await first
        with pytest.raises(UnableToCompensate, match="Cancelled"):
            await second
        assert len(engine_of(wf).run_locks) == 0
    assert calls == [Saga.CHARGED]


async def test_a_compensation_cannot_pause_or_cancel_its_run() -> None:
    async def meddle(r: Run[Order, Saga]) -> None:
        await r.cancel("my own way")

    b = saga(Undo(), "meddling")
    b.compensations.clear()
    b.add_compensation(Saga.CHARGED, meddle)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await failed_order(wf)
        with pytest.raises(WorkflowError, match="cannot pause or cancel its run"):
            await wf.compensate(run_id, "refund")
        assert (await wf.lookup(run_id)).run_state == RunState.PAUSED


def test_add_compensation_checks_its_arguments() -> None:
    b = saga(Undo(), "checked")
    with pytest.raises(ValueError, match="one compensation per status"):
        b.add_compensation(Saga.CREATED, Undo())
    with pytest.raises(ValueError, match="reserved"):
        b.add_compensation(Saga.UNKNOWN, Undo())
    with pytest.raises(TypeError, match="must be a member of Saga"):
        b.add_compensation(1, Undo())  # type: ignore[arg-type]

    def not_async(r: Run[Order, Saga]) -> None:
        return None

    with pytest.raises(TypeError, match="async"):
        b.add_compensation(Saga.SHIPPED, not_async)  # type: ignore[arg-type]

    class Extra(enum.IntEnum):
        UNKNOWN = 0
        A = 1
        B = 2
        LOST = 9

    async def step(r: Run[Order, Extra]) -> Extra:
        return Extra.B

    async def undo(r: Run[Order, Extra]) -> None:
        return None

    off = Builder("off-graph", Order, Extra)
    off.add_step(Extra.A, step, Extra.B)
    off.add_compensation(Extra.LOST, undo)
    with pytest.raises(ValueError, match=r"LOST.*not a status of workflow 'off-graph'"):
        Stores().build(off)


async def test_a_run_without_history_entries_is_not_compensated() -> None:
    s = Stores()
    quiet = s.build(saga(Undo(), "late"), history=False)
    run_id = await quiet.trigger("o", initial_value=Order(id="o"))
    again = s.build(saga(Undo(), "late"))  # history on again, for later writes only
    with pytest.raises(HistoryNotKept, match="no history entries"):
        await again.compensate(run_id, "nothing to go on")
    assert (await again.lookup(run_id)).meta.version == 1  # nothing was written
