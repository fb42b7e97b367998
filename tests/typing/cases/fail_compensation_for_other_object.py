from common import Other, OtherStatus, Task, TaskStatus

from luno_wf import Builder, Run
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer


async def process(r: Run[Task, TaskStatus]) -> TaskStatus:
    return TaskStatus.PROCESSED


async def undo_other(r: Run[Other, TaskStatus]) -> None:
    return None


async def undo_returns_status(r: Run[Task, TaskStatus]) -> TaskStatus:
    return TaskStatus.CREATED


async def undo(r: Run[Task, TaskStatus]) -> None:
    return None


b = Builder("typed", Task, TaskStatus)
b.add_step(TaskStatus.CREATED, process, TaskStatus.PROCESSED)
b.add_compensation(TaskStatus.CREATED, undo_other)  # E: arg-type
b.add_compensation(TaskStatus.PROCESSED, undo_returns_status)  # E: arg-type
b.add_compensation(OtherStatus.OPEN, undo)  # E: arg-type


async def use(run_id: str) -> None:
    wf = b.build(MemStreamer(), MemRecordStore(), MemRoleScheduler())
    await wf.compensate(run_id, "refund", to=OtherStatus.OPEN)  # E: arg-type
    history = await wf.history(run_id)
    other: OtherStatus = history[0].status  # E: assignment
