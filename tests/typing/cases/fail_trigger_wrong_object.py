from common import Other, Task, TaskStatus

from luno_wf import Builder, Run, Workflow


async def step(r: Run[Task, TaskStatus]) -> TaskStatus:
    return TaskStatus.PROCESSED


async def use(wf: Workflow[Task, TaskStatus]) -> None:
    await wf.trigger("x", initial_value=Other())  # E: arg-type
    await wf.await_status("x", "run", 3)  # E: arg-type
