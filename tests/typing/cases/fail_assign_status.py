from common import Task, TaskStatus

from luno_wf import Run, TypedRecord


async def step(r: Run[Task, TaskStatus]) -> TaskStatus:
    r.status = TaskStatus.COMPLETED  # E: misc
    r.object.id = "changed"  # the object may change: it is stored with the next status
    return TaskStatus.PROCESSED


async def on_done(r: TypedRecord[Task, TaskStatus]) -> None:
    r.status = TaskStatus.CREATED  # E: misc
