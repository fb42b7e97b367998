from __future__ import annotations

import json

import pytest

from luno_wf import Builder, Run, RunState
from luno_wf.errors import CallbackNotAccepted, RecordNotFound
from luno_wf.testing import trigger_callback_on, wait_for

from ..support import Obj, Status, Stores, versions


async def confirm(r: Run[Obj, Status], payload: bytes) -> Status:
    body = json.loads(payload)
    if body.get("ignore"):
        return r.skip()
    r.object.note = body["note"]
    return Status.END


def workflow() -> Builder[Obj, Status]:
    async def start(r: Run[Obj, Status]) -> Status:
        return Status.MIDDLE

    b = Builder("callbacks", Obj, Status)
    b.add_step(Status.STARTED, start, Status.MIDDLE)
    b.add_callback(Status.MIDDLE, confirm, Status.END)
    return b


async def test_callback_moves_the_run_waiting_in_that_status() -> None:
    s = Stores()
    async with s.build(workflow()) as wf:
        run_id = await wf.trigger("f")
        await trigger_callback_on(wf, "f", run_id, Status.MIDDLE, {"note": "paid"})
        run = await wf.await_status("f", run_id, Status.END)
    assert run.object.note == "paid"
    assert run.run_state == RunState.COMPLETED
    assert versions(s.store, run.record) == [1, 2, 3]


async def test_callback_says_clearly_when_nothing_is_waiting() -> None:
    s = Stores()
    async with s.build(workflow()) as wf:
        with pytest.raises(RecordNotFound):
            await wf.callback("nobody", Status.MIDDLE, b"{}")
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.MIDDLE)
        with pytest.raises(CallbackNotAccepted, match="no callback is configured"):
            await wf.callback("f", Status.STARTED, b"{}")
        await wf.callback("f", Status.MIDDLE, b'{"note": "x"}')
        await wf.await_status("f", run_id, Status.END)
        with pytest.raises(CallbackNotAccepted, match=r"latest run is at <Status\.END: 3>"):
            await wf.callback("f", Status.MIDDLE, b'{"note": "again"}')
    assert (await s.store.lookup(run_id)).meta.version == 3


async def test_skipping_callback_stores_nothing_and_paused_runs_refuse_callbacks() -> None:
    s = Stores()
    async with s.build(workflow()) as wf:
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.MIDDLE)
        await wf.callback("f", Status.MIDDLE, b'{"ignore": true}')
        assert (await s.store.lookup(run_id)).meta.version == 2
        await wf.pause(run_id, "hold")
        with pytest.raises(CallbackNotAccepted, match="Paused"):
            await wf.callback("f", Status.MIDDLE, b'{"note": "x"}')
        run = await wait_for(wf, "f", lambda r: r.run_state == RunState.PAUSED)
        assert run.object.note == ""


async def test_callback_errors_reach_the_caller_unchanged() -> None:
    s = Stores()
    async with s.build(workflow()) as wf:
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.MIDDLE)
        with pytest.raises(json.JSONDecodeError):
            await wf.callback("f", Status.MIDDLE, b"not json")
        with pytest.raises(TypeError, match="bytes"):
            await wf.callback("f", Status.MIDDLE, "text")
