from common import OtherStatus, Task, TaskStatus

from luno_wf import Builder, Run


async def step(r: Run[Task, TaskStatus]) -> OtherStatus:
    return OtherStatus.OPEN


b = Builder("typed", Task, TaskStatus)
b.add_step(TaskStatus.CREATED, step, TaskStatus.PROCESSED)  # E: arg-type
