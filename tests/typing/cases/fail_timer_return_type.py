from datetime import datetime, timedelta

from common import Task, TaskStatus

from luno_wf import Builder, Run


async def timer(r: Run[Task, TaskStatus], now: datetime) -> timedelta:
    return timedelta(minutes=5)


async def expire(r: Run[Task, TaskStatus], now: datetime) -> TaskStatus:
    return TaskStatus.COMPLETED


b = Builder("typed", Task, TaskStatus)
b.add_timeout(TaskStatus.PROCESSED, timer, expire, TaskStatus.COMPLETED)  # E: arg-type
