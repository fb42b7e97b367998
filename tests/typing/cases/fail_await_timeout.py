from datetime import timedelta

from common import Task, TaskStatus

from luno_wf import API, Workflow


async def use(wf: Workflow[Task, TaskStatus], api: API[Task, TaskStatus], run_id: str) -> None:
    await wf.await_status("t", run_id, TaskStatus.COMPLETED, timeout=timedelta(seconds=5))
    await wf.await_status("t", run_id, TaskStatus.COMPLETED, timeout=5.0)  # E: arg-type
    await api.await_status("t", run_id, TaskStatus.COMPLETED, timeout=timedelta(seconds=5))
