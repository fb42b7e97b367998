from common import OtherStatus, Task, TaskStatus

from luno_wf import Builder, Run


async def step(r: Run[Task, TaskStatus]) -> TaskStatus:
    return TaskStatus.PROCESSED


b = Builder("typed", Task, TaskStatus)
b.add_step(OtherStatus.OPEN, step, TaskStatus.PROCESSED)  # E: arg-type
