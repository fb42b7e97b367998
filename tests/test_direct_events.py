"""The engine and a record store that writes a workflow's events itself (DirectEvents)."""

from __future__ import annotations

from typing import Any

from luno_wf import Builder, DirectEvents, EventStreamer, ProcessState, Run
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer

from .support import Obj, Status


class AskedStore(MemRecordStore):
    """A memory store that says it publishes the events of some workflows itself.

    It still writes outbox rows (a memory store cannot do otherwise): the engine's sweeper
    publishes them, so runs still move, only later.
    """

    def __init__(self, answer: bool) -> None:
        super().__init__()
        self.answer = answer
        self.asked: list[tuple[str, Any]] = []

    def publishes_events(self, workflow_name: str, streamer: EventStreamer) -> bool:
        self.asked.append((workflow_name, streamer))
        return self.answer


async def finish(r: Run[Obj, Status]) -> Status:
    return Status.END


def one_step(name: str) -> Builder[Obj, Status]:
    b = Builder(name, Obj, Status)
    b.add_step(Status.STARTED, finish, Status.END)
    return b


def test_the_store_is_asked_once_when_the_workflow_is_built() -> None:
    store, streamer = AskedStore(True), MemStreamer()
    assert isinstance(store, DirectEvents)
    assert not isinstance(MemRecordStore(), DirectEvents)
    one_step("wf").build(streamer, store, MemRoleScheduler())
    assert store.asked == [("wf", streamer)]


async def test_states_name_the_sweeper_when_the_store_publishes() -> None:
    store = AskedStore(True)
    wf = one_step("wf").build(MemStreamer(), store, MemRoleScheduler())
    async with wf:
        states = wf.states()
        assert "outbox-sweeper" in states
        assert "outbox-consumer" not in states
        assert states["outbox-sweeper"] in {ProcessState.IDLE, ProcessState.RUNNING}
        run_id = await wf.trigger("a", initial_value=Obj())
        # The outbox rows this store still writes are swept up within a polling interval.
        assert (await wf.await_status("a", run_id, Status.END)).status == Status.END
    assert store.asked == [("wf", store.asked[0][1])]
    assert len(store.asked) == 1, "asked again when the workflow ran"


async def test_states_name_the_publisher_otherwise() -> None:
    wf = one_step("wf").build(MemStreamer(), AskedStore(False), MemRoleScheduler())
    async with wf:
        assert "outbox-consumer" in wf.states()
        assert "outbox-sweeper" not in wf.states()
