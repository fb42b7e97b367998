"""Run history through the workflow: actors and errors on every write, ``wf.history``, retention."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import enum
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from luno_wf import (
    API,
    Builder,
    ConnectorEvent,
    OrderType,
    OutboxEvent,
    Record,
    RecordFilter,
    Run,
    RunState,
    Transition,
    duration_timer,
    prune_history_periodically,
)
from luno_wf._processes.pauseretry import paused_after_errors
from luno_wf.errors import HistoryNotKept, RecordNotFound
from luno_wf.memory import MemConnector, MemRecordStore, MemRoleScheduler, MemStreamer
from luno_wf.testing import FakeClock, wait_for

from .support import FAST, Obj, Status, Stores


class Step(enum.IntEnum):
    UNKNOWN = 0
    ORDERED = 1
    PACKED = 2
    SENT = 3
    DELIVERED = 4


async def advance(r: Run[Obj, Step]) -> Step:
    r.object.count += 1
    return Step(r.status + 1)


def three_steps(name: str = "parcel") -> Builder[Obj, Step]:
    b = Builder(name, Obj, Step)
    b.add_step(Step.ORDERED, advance, Step.PACKED)
    b.add_step(Step.PACKED, advance, Step.SENT)
    b.add_step(Step.SENT, advance, Step.DELIVERED)
    return b


async def test_history_of_a_three_step_run() -> None:
    s = Stores()
    async with s.build(three_steps()) as wf:
        run_id = await wf.trigger("p-1")
        await wf.await_status("p-1", run_id, Step.DELIVERED)
        history = await wf.history(run_id)
    assert [t.version for t in history] == [1, 2, 3, 4]
    assert [t.status for t in history] == [Step.ORDERED, Step.PACKED, Step.SENT, Step.DELIVERED]
    assert [t.run_state for t in history] == [
        RunState.INITIATED,
        RunState.RUNNING,
        RunState.RUNNING,
        RunState.COMPLETED,
    ]
    assert [t.actor for t in history] == ["api", "step:ORDERED", "step:PACKED", "step:SENT"]
    assert [t.at for t in history] == sorted(t.at for t in history)
    assert all(t.run_id == run_id and t.error == "" and t.object is None for t in history)
    assert all(isinstance(t, Transition) for t in history)
    # The typed status is the workflow's enum, the values the stored record's.
    assert history[-1].status.name == "DELIVERED"


async def test_operator_identity_names_the_run_state_verbs() -> None:
    s = Stores()
    async with s.build(three_steps("ops")) as wf:
        run_id = await wf.trigger("p-1", start_at=Step.SENT, actor="operator:carol")
        await wf.await_status("p-1", run_id, Step.DELIVERED)
        await wf.delete_data(run_id, "GDPR", actor="operator:alice")
        await wait_for(wf, "p-1", lambda r: r.run_state == RunState.DATA_DELETED)
        other = await wf.trigger("p-2", start_at=Step.SENT)
    # A run waiting without steps running: pause, resume and cancel by hand.
    b = Builder("held", Obj, Step)
    b.add_step(Step.ORDERED, advance, Step.PACKED)
    held = s.build(b)
    run_id = await held.trigger("h-1")
    await held.pause(run_id, "fraud check", actor="operator:alice")
    await held.resume(run_id)
    await held.cancel(run_id, "customer left", actor="operator:bob")
    actors = [(t.run_state, t.actor, t.reason) for t in await held.history(run_id)]
    assert actors == [
        (RunState.INITIATED, "api", ""),
        (RunState.PAUSED, "operator:alice", "fraud check"),
        (RunState.RUNNING, "api", ""),
        (RunState.CANCELLED, "operator:bob", "customer left"),
    ]
    deleted = await s.store.history(await _latest_run(s.store, "ops", "p-1"))
    assert [e.actor for e in deleted] == ["operator:carol", "step:SENT", "operator:alice", "delete"]
    assert (await s.store.history(other))[0].actor == "api"


async def _latest_run(store: MemRecordStore, workflow: str, foreign_id: str) -> str:
    return (await store.latest(workflow, foreign_id)).run_id


async def test_an_automatic_pause_keeps_the_error_and_resume_clears_it() -> None:
    failures = 1

    async def flaky(r: Run[Obj, Status]) -> Status:
        nonlocal failures
        if failures:
            failures -= 1
            raise ValueError("warehouse unreachable")
        return Status.END

    b = Builder("flaky", Obj, Status)
    b.add_step(Status.STARTED, flaky, Status.END, pause_after_err_count=1, err_backoff=FAST)
    s = Stores()
    async with s.build(b) as wf:
        run_id = await wf.trigger("f")
        paused = await wait_for(wf, "f", lambda r: r.run_state == RunState.PAUSED)
        assert paused.meta.error == "ValueError: warehouse unreachable"
        assert paused.meta.actor == "step:STARTED"
        assert paused_after_errors(paused.record)
        await wf.resume(run_id, actor="operator:alice")
        done = await wf.await_status("f", run_id, Status.END)
        history = await wf.history(run_id)
    assert done.meta.error == ""
    assert [(t.actor, t.error) for t in history] == [
        ("api", ""),
        ("step:STARTED", "ValueError: warehouse unreachable"),
        ("operator:alice", ""),
        ("step:STARTED", ""),
    ]
    assert history[1].reason.startswith("max error retry threshold hit")


async def test_the_paused_run_retry_names_itself() -> None:
    clock = FakeClock()
    failures = 1

    async def flaky(r: Run[Obj, Status]) -> Status:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("transient")
        return Status.END

    b = Builder("retry-actor", Obj, Status)
    b.add_step(Status.STARTED, flaky, Status.END, pause_after_err_count=1)
    s = Stores(clock=clock)
    async with s.build(b, pause_retry=timedelta(hours=1)) as wf:
        run_id = await wf.trigger("f")
        await wait_for(wf, "f", lambda r: r.run_state == RunState.PAUSED)
        await asyncio.sleep(0.05)
        clock.advance(timedelta(hours=1))
        await wf.await_status("f", run_id, Status.END)
        history = await wf.history(run_id)
    assert [t.actor for t in history] == ["api", "step:STARTED", "pause-retry", "step:STARTED"]
    assert history[2].error == "" and history[2].reason == ""


async def test_callbacks_and_timeouts_name_their_status() -> None:
    clock = FakeClock()

    async def confirmed(r: Run[Obj, Step], payload: bytes) -> Step:
        return Step.SENT

    async def lost(r: Run[Obj, Step], now: datetime) -> Step:
        return Step.DELIVERED

    b = Builder("actors", Obj, Step)
    b.add_callback(Step.PACKED, confirmed, Step.SENT)
    b.add_timeout(
        Step.SENT, duration_timer(timedelta(days=3)), lost, Step.DELIVERED, polling_frequency=FAST
    )
    s = Stores(clock=clock)
    async with s.build(b) as wf:
        first = await wf.trigger("c-1", start_at=Step.PACKED)
        await wf.callback("c-1", Step.PACKED, b"{}")
        second = await wf.trigger("c-2", start_at=Step.PACKED)
        await wf.callback("c-2", Step.PACKED, b"{}", actor="carrier:ups")
        for foreign_id in ("c-1", "c-2"):
            await wait_for(wf, foreign_id, lambda r: r.status == Step.SENT)
        while clock.sleepers == 0 or len(await s.timeouts.list("actors")) < 2:
            await asyncio.sleep(0.005)
        clock.advance(timedelta(days=3))
        await wf.await_status("c-1", first, Step.DELIVERED)
        await wf.await_status("c-2", second, Step.DELIVERED)
        one = [t.actor for t in await wf.history(first)]
        two = [t.actor for t in await wf.history(second)]
    assert one == ["api", "callback:PACKED", "timeout:SENT"]
    assert two == ["api", "carrier:ups", "timeout:SENT"]


async def test_connector_calls_name_the_connector_unless_told_otherwise() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    seen = asyncio.Event()

    async def on_event(api: API[Obj, Step], event: ConnectorEvent) -> None:
        actor = "partner:acme" if event.type == "named" else None
        await api.trigger(event.foreign_id, actor=actor)
        if event.id == "2":
            seen.set()

    b = three_steps("connected")
    source = MemConnector(
        [
            ConnectorEvent(id="1", foreign_id="x-1", type="plain", created_at=now),
            ConnectorEvent(id="2", foreign_id="x-2", type="named", created_at=now),
        ]
    )
    b.add_connector("partner feed", source, on_event)
    s = Stores()
    wf = s.build(b)
    async with wf:
        await asyncio.wait_for(seen.wait(), 5)
        first = (await wf.history((await wf.latest("x-1")).run_id))[0]
        second = (await wf.history((await wf.latest("x-2")).run_id))[0]
        # Outside a connector function the API is "api" again.
        third = (await wf.history(await wf.trigger("x-3")))[0]
    assert first.actor == "connector:partner feed"
    assert second.actor == "partner:acme"
    assert third.actor == "api"


async def test_history_off_keeps_none() -> None:
    s = Stores()
    async with s.build(three_steps("quiet"), history=False) as wf:
        run_id = await wf.trigger("q")
        await wf.await_status("q", run_id, Step.DELIVERED)
        assert await wf.history(run_id) == []
        with pytest.raises(HistoryNotKept, match="history=False"):
            await wf.compensate(run_id, "nothing to go on")
    assert await s.store.history(run_id) == []


async def test_object_snapshots_are_opt_in() -> None:
    s = Stores()
    async with s.build(three_steps("plain")) as wf:
        plain = await wf.trigger("s", initial_value=Obj(id="s"))
        await wf.await_status("s", plain, Step.DELIVERED)
        assert all(t.object is None for t in await wf.history(plain))
    async with s.build(three_steps("snapshots"), history_objects=True) as wf:
        kept = await wf.trigger("s", initial_value=Obj(id="s"))
        await wf.await_status("s", kept, Step.DELIVERED)
        history = await wf.history(kept)
    assert [t.object_as(Obj) for t in history] == [Obj(id="s", count=n) for n in range(4)]
    with pytest.raises(TypeError, match="not a Record"):
        history[0].object_as(Record)
    bare = attrs.evolve(history[0], decode=None)
    with pytest.raises(TypeError, match="no decoder"):
        bare.object_as(Obj)
    assert attrs.evolve(history[0], object=None).object_as(Obj) is None


async def test_data_deletion_scrubs_the_history_but_keeps_its_entries() -> None:
    s = Stores()
    async with s.build(three_steps("gdpr"), history_objects=True) as wf:
        run_id = await wf.trigger("g", initial_value=Obj(id="g", note="secret"))
        await wf.await_status("g", run_id, Step.DELIVERED)
        await wf.delete_data(run_id, "GDPR request of g")
        await wait_for(wf, "g", lambda r: r.run_state == RunState.DATA_DELETED)
        history = await wf.history(run_id)
    assert [t.version for t in history] == [1, 2, 3, 4, 5, 6]
    assert all(t.object is None and t.reason == "" and t.error == "" for t in history)
    assert [t.actor for t in history][-2:] == ["api", "delete"]
    assert history[-1].run_state == RunState.DATA_DELETED


class PlainStore:
    """A record store without the history capability (it delegates to a memory store)."""

    def __init__(self) -> None:
        self._inner = MemRecordStore()

    async def store(self, record: Record) -> None:
        await self._inner.store(record)

    async def lookup(self, run_id: str) -> Record:
        return await self._inner.lookup(run_id)

    async def latest(self, workflow_name: str, foreign_id: str) -> Record:
        return await self._inner.latest(workflow_name, foreign_id)

    async def list(
        self,
        workflow_name: str,
        *,
        offset: int = 0,
        limit: int = 25,
        order: OrderType = OrderType.ASCENDING,
        filters: Sequence[RecordFilter] = (),
    ) -> builtins.list[Record]:
        return await self._inner.list(
            workflow_name, offset=offset, limit=limit, order=order, filters=filters
        )

    async def list_outbox_events(
        self, workflow_name: str, limit: int
    ) -> builtins.list[OutboxEvent]:
        return await self._inner.list_outbox_events(workflow_name, limit)

    async def delete_outbox_event(self, id: str) -> None:
        await self._inner.delete_outbox_event(id)


async def test_a_store_without_history_says_so() -> None:
    wf = three_steps("no-history").build(MemStreamer(), PlainStore(), MemRoleScheduler())
    run_id = await wf.trigger("n")
    with pytest.raises(HistoryNotKept, match="PlainStore keeps no run history"):
        await wf.history(run_id)
    with pytest.raises(HistoryNotKept, match="PlainStore"):
        await wf.compensate(run_id, "no history")
    report = await wf.inspect(run_id)
    assert report.history == []
    assert any("history not kept" in note for note in report.notes)
    assert report.outbox_pending  # found by decoding the listed rows
    with pytest.raises(TypeError, match="keeps no history"):
        await prune_history_periodically(PlainStore(), keep=timedelta(days=1))  # type: ignore[arg-type]


async def test_a_swapped_id_or_another_workflows_run_is_not_found() -> None:
    s = Stores()
    wf = s.build(three_steps("mine"))
    theirs = s.build(three_steps("theirs"))
    run_id = await wf.trigger("order-1")
    swapped = rf"no run has id 'order-1', but it is a foreign id .*latest run is '{run_id}'"
    with pytest.raises(RecordNotFound, match=swapped):
        await wf.history("order-1")
    with pytest.raises(RecordNotFound, match=swapped):
        await wf.inspect("order-1")
    with pytest.raises(RecordNotFound, match=swapped):
        await wf.compensate("order-1", "swapped")
    with pytest.raises(RecordNotFound, match="belongs to workflow 'mine'"):
        await theirs.history(run_id)
    with pytest.raises(RecordNotFound, match="belongs to workflow 'mine'"):
        await theirs.inspect(run_id)
    with pytest.raises(RecordNotFound, match="no run has id 'nobody'"):
        await wf.history("nobody")


async def test_history_is_pruned_on_a_schedule() -> None:
    clock = FakeClock(datetime(2025, 1, 1, tzinfo=UTC))
    s = Stores(clock=clock)
    async with s.build(three_steps("pruned")) as wf:
        old = await wf.trigger("old")
        await wf.await_status("old", old, Step.DELIVERED)
    clock.advance(timedelta(days=40))
    task = asyncio.create_task(
        prune_history_periodically(
            s.store, keep=timedelta(days=30), every=timedelta(days=1), clock=clock
        )
    )
    try:
        while len(await s.store.history(old)) > 1:
            await asyncio.sleep(0.005)
        assert [e.version for e in await s.store.history(old)] == [4]  # the newest stays
        async with s.build(three_steps("pruned")) as wf:
            new = await wf.trigger("new")
            await wf.await_status("new", new, Step.DELIVERED)
        clock.advance(timedelta(days=29))  # rounds run; the new run's entries are kept
        await asyncio.sleep(0.05)
        assert len(await s.store.history(new)) == 4
        clock.advance(timedelta(days=2))
        while len(await s.store.history(new)) > 1:
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_pruning_needs_positive_durations() -> None:
    with pytest.raises(ValueError, match="positive"):
        await prune_history_periodically(MemRecordStore(), keep=timedelta(0))
    with pytest.raises(ValueError, match="positive"):
        await prune_history_periodically(
            MemRecordStore(), keep=timedelta(days=1), every=timedelta(0)
        )
