from common import Other, OtherStatus, Task, TaskStatus

from luno_wf import Run, Workflow
from luno_wf.testing import await_timeout_insert, require, trigger_callback_on


async def use(wf: Workflow[Task, TaskStatus], run_id: str) -> None:
    run: Run[Task, TaskStatus] = await require(wf, "t", TaskStatus.COMPLETED, Task(id="t"))
    await require(wf, "t", TaskStatus.COMPLETED, Other())  # E: arg-type
    await require(wf, "t", OtherStatus.OPEN, Task(id="t"))  # E: arg-type
    await require(wf, "t", 3, Task(id="t"))  # E: arg-type
    await await_timeout_insert(wf, "t", run_id, TaskStatus.PROCESSED)
    await await_timeout_insert(wf, "t", run_id, OtherStatus.OPEN)  # E: arg-type
    await trigger_callback_on(wf, "t", run_id, OtherStatus.OPEN, b"")  # E: arg-type
    print(run)
