"""Quickstart: a three-status workflow on the in-memory adapters.

Run it with ``make demo`` (or ``python examples/quickstart.py``). It triggers one run,
prints each status the run reaches, and ends when the run is COMPLETED.
"""

from __future__ import annotations

import asyncio
import enum

import attrs

from luno_wf import Builder, Run, RunState, TypedRecord, Workflow
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer


class TaskStatus(enum.IntEnum):
    UNKNOWN = 0  # 0 is reserved: never a real status
    CREATED = 1
    PROCESSED = 2
    COMPLETED = 3


@attrs.define
class Task:
    id: str
    name: str = ""


async def process(r: Run[Task, TaskStatus]) -> TaskStatus:
    print(f"  step   {r.status.name:<9} -> PROCESSED  (upper-casing {r.object.name!r})")
    r.object.name = r.object.name.upper()
    return TaskStatus.PROCESSED


async def finish(r: Run[Task, TaskStatus]) -> TaskStatus:
    print(f"  step   {r.status.name:<9} -> COMPLETED  (object is now {r.object})")
    return TaskStatus.COMPLETED


hooked: asyncio.Queue[TypedRecord[Task, TaskStatus]] = asyncio.Queue()


async def completed(r: TypedRecord[Task, TaskStatus]) -> None:
    print(f"  hook   run {r.run_id[:8]} completed at version {r.meta.version}")
    await hooked.put(r)


def build() -> Workflow[Task, TaskStatus]:
    b = Builder("task-processor", Task, TaskStatus)
    b.add_step(TaskStatus.CREATED, process, TaskStatus.PROCESSED)
    b.add_step(TaskStatus.PROCESSED, finish, TaskStatus.COMPLETED, parallel_count=4)
    b.on_complete(completed)
    return b.build(MemStreamer(), MemRecordStore(), MemRoleScheduler())


async def main() -> TypedRecord[Task, TaskStatus]:
    wf = build()
    async with wf:
        run_id = await wf.trigger("task-1", initial_value=Task(id="task-1", name="invoice"))
        print(f"triggered run {run_id[:8]} of {wf.name!r} for foreign id 'task-1'")
        run = await wf.await_status("task-1", run_id, TaskStatus.COMPLETED)
        assert run.run_state == RunState.COMPLETED
        print(f"run {run_id[:8]} reached {run.status.name} ({run.run_state}): {run.object}")
        # The on_complete hook runs in its own background process: wait for it too.
        return await asyncio.wait_for(hooked.get(), timeout=5)


if __name__ == "__main__":
    asyncio.run(main())
