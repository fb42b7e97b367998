from common import Task, TaskStatus

from luno_wf import Builder, Run


async def confirm(r: Run[Task, TaskStatus]) -> TaskStatus:  # no payload argument
    return TaskStatus.COMPLETED


b = Builder("typed", Task, TaskStatus)
b.add_callback(TaskStatus.PROCESSED, confirm, TaskStatus.COMPLETED)  # E: arg-type
