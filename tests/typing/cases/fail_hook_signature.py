from common import Other, Task, TaskStatus

from luno_wf import Builder, TypedRecord


async def on_done(r: TypedRecord[Other, TaskStatus]) -> None:
    return None


b = Builder("typed", Task, TaskStatus)
b.on_complete(on_done)  # E: arg-type
