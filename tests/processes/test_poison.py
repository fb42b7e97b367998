"""Poison events on the memory adapters: set aside as dead letters, the consumer goes on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from luno_wf import Builder, Header, Record, Run, RunState, replay_dead_letter, topic
from luno_wf.errors import CorruptRecord
from luno_wf.memory import MemRecordStore
from luno_wf.testing import TestingRecordStore

from ..support import FAST, Obj, Status, Stores


async def to_end(r: Run[Obj, Status]) -> Status:
    return Status.END


def workflow(name: str) -> Builder[Obj, Status]:
    b = Builder(name, Obj, Status)
    b.add_step(Status.STARTED, to_end, Status.END, err_backoff=FAST)
    return b


async def inject(s: Stores, name: str, run_id: str, headers: dict[str, str]) -> None:
    sender = await s.streamer.new_sender(topic(name, int(Status.STARTED)))
    await sender.send(run_id, int(Status.STARTED), headers)
    await sender.close()


async def dead_letters(store: MemRecordStore, count: int = 1) -> list[Any]:
    async with asyncio.timeout(10):
        while len(letters := await store.list_dead_letters()) < count:
            await asyncio.sleep(0.01)
    return letters


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"record_version": "not-a-number"}, "header is not a number"),
        ({Header.MALFORMED: "[1, 2]"}, "headers are not a JSON object of strings"),
        ({"record_version": "99"}, "still after 10 deliveries"),
    ],
    ids=["version-not-a-number", "malformed-headers", "version-ahead-of-record"],
)
async def test_a_poison_event_is_set_aside_and_the_consumer_goes_on(
    headers: dict[str, str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = Stores()
    name = "poison"
    async with s.build(workflow(name), pause_retry=None) as wf:
        other = await wf.trigger("other")
        await inject(s, name, other, headers)
        after = [await wf.trigger(f"after-{i}") for i in range(5)]
        for i, run_id in enumerate(after):
            await wf.await_status(f"after-{i}", run_id, Status.END)
        (letter,) = await dead_letters(s.store)
        final = await wf.lookup(other)
    assert letter.workflow_name == name and letter.process_name == "started-consumer-1-of-1"
    assert letter.topic == topic(name, int(Status.STARTED))
    assert letter.event.foreign_id == other and letter.event.headers == headers
    assert reason in letter.reason
    # The run the event named was already done or is paused with the reason; never lost.
    assert final.status == Status.END or (
        final.run_state == RunState.PAUSED and reason in final.meta.run_state_reason
    )
    errors = [r for r in caplog.records if "setting aside an event" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR


class RowsGoneBad(TestingRecordStore):
    """A store some of whose rows cannot be read (as a hand-edited database row would be)."""

    def __init__(self) -> None:
        super().__init__()
        self.corrupt: set[str] = set()

    async def lookup(self, run_id: str) -> Record:
        if run_id in self.corrupt:
            raise CorruptRecord(f"the stored row of run {run_id!r} cannot be read")
        return await super().lookup(run_id)

    async def lookup_many(self, run_ids: Sequence[str]) -> dict[str, Record]:
        found = await super().lookup_many(run_ids)
        return {k: v for k, v in found.items() if k not in self.corrupt}


async def test_an_unreadable_record_sets_its_event_aside_and_a_replay_moves_the_run() -> None:
    s = Stores(store=RowsGoneBad())
    store = s.store
    assert isinstance(store, RowsGoneBad)
    b = workflow("unreadable")
    wf = s.build(b, pause_retry=None)
    run_id = await wf.trigger("f")  # written before any worker runs: its event waits
    store.corrupt.add(run_id)
    async with wf:
        others = [await wf.trigger(f"g{i}") for i in range(3)]
        for i, other in enumerate(others):
            await wf.await_status(f"g{i}", other, Status.END)  # the consumer went on
        (letter,) = await dead_letters(store)
        assert "CorruptRecord" in letter.reason and letter.event.foreign_id == run_id
        store.corrupt.clear()  # the row is fixed
        await replay_dead_letter(store, s.streamer, letter)
        run = await wf.await_status("f", run_id, Status.END)
    assert run.run_state == RunState.COMPLETED
    assert await store.list_dead_letters() == []
