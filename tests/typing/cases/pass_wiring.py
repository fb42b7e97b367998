from datetime import datetime, timedelta
from typing import Generic, TypeVar

import attrs
from common import Task, TaskStatus

from luno_wf import (
    API,
    Builder,
    ConnectorEvent,
    Inspection,
    Run,
    Transition,
    TypedRecord,
    Workflow,
    duration_timer,
)
from luno_wf.memory import MemConnector, MemRecordStore, MemRoleScheduler, MemStreamer, MemTimeoutStore
from luno_wf.testing import await_timeout_insert, require, trigger_callback_on

P = TypeVar("P")


async def process(r: Run[Task, TaskStatus]) -> TaskStatus:
    if not r.object.id:
        return await r.pause("no id")
    return TaskStatus.PROCESSED


async def confirm(r: Run[Task, TaskStatus], payload: bytes) -> TaskStatus:
    return TaskStatus.COMPLETED if payload else r.skip()


async def timer(r: Run[Task, TaskStatus], now: datetime) -> datetime | None:
    return now + timedelta(minutes=5)


async def expire(r: Run[Task, TaskStatus], now: datetime) -> TaskStatus:
    return TaskStatus.COMPLETED


async def on_done(r: TypedRecord[Task, TaskStatus]) -> None:
    print(r.object.id, r.status.name)


async def on_event(api: API[Task, TaskStatus], event: ConnectorEvent) -> None:
    await api.trigger(event.foreign_id, initial_value=Task(id=event.id), actor="partner:acme")


async def undo(r: Run[Task, TaskStatus]) -> None:
    print("undo", r.status.name, r.object.id)


async def erase(obj: Task) -> Task:
    return Task(id=obj.id)


b = Builder("typed", Task, TaskStatus)
b.add_step(TaskStatus.CREATED, process, TaskStatus.PROCESSED, TaskStatus.COMPLETED, parallel_count=2)
b.add_callback(TaskStatus.PROCESSED, confirm, TaskStatus.COMPLETED)
b.add_timeout(TaskStatus.PROCESSED, timer, expire, TaskStatus.COMPLETED)
b.add_timeout(TaskStatus.PROCESSED, duration_timer(timedelta(hours=1)), expire, TaskStatus.COMPLETED)
b.add_timeout(TaskStatus.CREATED, timer, expire, TaskStatus.COMPLETED, lag_alert=timedelta(1))
b.add_connector("source", MemConnector(), on_event)
b.on_complete(on_done)
b.add_compensation(TaskStatus.CREATED, undo)
b.add_compensation(TaskStatus.PROCESSED, undo)
wf: Workflow[Task, TaskStatus] = b.build(
    MemStreamer(),
    MemRecordStore(),
    MemRoleScheduler(),
    timeout_store=MemTimeoutStore(),
    custom_delete=erase,
)


@attrs.define
class Envelope(Generic[P]):
    payload: P


async def open_envelope(r: Run[Envelope[Task], TaskStatus]) -> TaskStatus:
    return TaskStatus.PROCESSED


generic = Builder("generic", Envelope[Task], TaskStatus)
generic.add_step(TaskStatus.CREATED, open_envelope, TaskStatus.PROCESSED)


async def use() -> None:
    async with wf:
        run_id = await wf.trigger("t", initial_value=Task(id="t"))
        await await_timeout_insert(wf, "t", run_id, TaskStatus.PROCESSED)
        await trigger_callback_on(wf, "t", run_id, TaskStatus.PROCESSED, {"paid": True})
        await trigger_callback_on(wf, "t", run_id, TaskStatus.PROCESSED, b"raw")
        run = await wf.await_status("t", run_id, TaskStatus.COMPLETED, timeout=timedelta(seconds=5))
        status: TaskStatus = run.status
        task: Task = run.object
        print(status, task)
        same: Run[Task, TaskStatus] = await require(wf, "t", TaskStatus.COMPLETED, Task(id="t"))
        print(same.status.name)


async def operate(run_id: str) -> None:
    await wf.pause(run_id, "fraud check", actor="operator:alice")
    await wf.resume(run_id, actor="operator:alice")
    history: list[Transition[TaskStatus]] = await wf.history(run_id)
    first: TaskStatus = history[0].status
    snapshot: Task | None = history[0].object_as(Task)
    print(first.name, snapshot, history[0].actor, history[0].at.isoformat())
    report: Inspection[Task, TaskStatus] = await wf.inspect(run_id)
    if report.record is not None:
        task: Task = report.record.object
        print(task.id, report.record.status.name)
    print(str(report), report.outbox_pending, report.timeouts, report.role)
    await wf.compensate(run_id, "customer cancelled", to=TaskStatus.CREATED, actor="operator:bob")
