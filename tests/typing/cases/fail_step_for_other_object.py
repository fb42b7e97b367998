from common import Other, Task, TaskStatus

from luno_wf import Builder, Run


async def step(r: Run[Other, TaskStatus]) -> TaskStatus:
    return TaskStatus.PROCESSED


b = Builder("typed", Task, TaskStatus)
b.add_step(TaskStatus.CREATED, step, TaskStatus.PROCESSED)  # E: arg-type
