from common import Other, Task, TaskStatus

from luno_wf import Builder, Run
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer


async def step(r: Run[Task, TaskStatus]) -> TaskStatus:
    return TaskStatus.PROCESSED


async def erase_other(obj: Other) -> Other:
    return Other()


async def erase_to_dict(obj: Task) -> dict[str, str]:
    return {}


def erase_sync(obj: Task) -> Task:
    return Task()


b = Builder("typed", Task, TaskStatus)
b.add_step(TaskStatus.CREATED, step, TaskStatus.PROCESSED)
stores = (MemStreamer(), MemRecordStore(), MemRoleScheduler())
b.build(*stores, custom_delete=erase_other)  # E: arg-type
b.build(*stores, custom_delete=erase_to_dict)  # E: arg-type
b.build(*stores, custom_delete=erase_sync)  # E: arg-type
