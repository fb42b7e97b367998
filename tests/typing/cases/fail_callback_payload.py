from dataclasses import dataclass

from common import Task, TaskStatus

from luno_wf import Workflow
from luno_wf.testing import trigger_callback_on


@dataclass
class Paid:
    ref: str


async def use(wf: Workflow[Task, TaskStatus], run_id: str) -> None:
    await trigger_callback_on(wf, "t", run_id, TaskStatus.PROCESSED, b'{"paid": true}')
    await trigger_callback_on(wf, "t", run_id, TaskStatus.PROCESSED, {"paid": True})
    await trigger_callback_on(wf, "t", run_id, TaskStatus.PROCESSED, Task(id="t"))
    await trigger_callback_on(wf, "t", run_id, TaskStatus.PROCESSED, Paid(ref="p"))
    await trigger_callback_on(wf, "t", run_id, TaskStatus.PROCESSED, '{"paid": true}')  # E: arg-type
    await trigger_callback_on(wf, "t", run_id, TaskStatus.PROCESSED, 42)  # E: arg-type
