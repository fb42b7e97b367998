from datetime import datetime

from common import Task, TaskStatus

from luno_wf import Builder, Run


async def step(r: Run[Task, TaskStatus]) -> TaskStatus:
    return TaskStatus.PROCESSED


async def confirm(r: Run[Task, TaskStatus], payload: bytes) -> TaskStatus:
    return TaskStatus.COMPLETED


async def timer(r: Run[Task, TaskStatus], now: datetime) -> datetime | None:
    return now


async def expire(r: Run[Task, TaskStatus], now: datetime) -> TaskStatus:
    return TaskStatus.COMPLETED


b = Builder("typed", Task, TaskStatus)
b.add_step(TaskStatus.CREATED, step)  # E: call-arg
b.add_step(TaskStatus.CREATED, step, parallel_count=2)  # E: call-arg
b.add_callback(TaskStatus.PROCESSED, confirm)  # E: call-arg
b.add_timeout(TaskStatus.PROCESSED, timer, expire)  # E: call-arg
