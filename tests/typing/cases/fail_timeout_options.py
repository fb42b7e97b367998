from datetime import datetime, timedelta

from common import Task, TaskStatus

from luno_wf import Builder, Run


async def timer(r: Run[Task, TaskStatus], now: datetime) -> datetime | None:
    return now + timedelta(minutes=5)


async def expire(r: Run[Task, TaskStatus], now: datetime) -> TaskStatus:
    return TaskStatus.COMPLETED


b = Builder("typed", Task, TaskStatus)
b.add_timeout(TaskStatus.PROCESSED, timer, expire, TaskStatus.COMPLETED, parallel_count=2)  # E: call-arg
b.add_timeout(TaskStatus.PROCESSED, timer, expire, TaskStatus.COMPLETED, lag=timedelta(1))  # E: call-arg
b.add_timeout(TaskStatus.PROCESSED, timer, expire, TaskStatus.COMPLETED, lag_alert=timedelta(1))
