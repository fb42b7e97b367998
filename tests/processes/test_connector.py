from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest

from luno_wf import API, Builder, ConnectorEvent, Options, Run
from luno_wf._processes.connector import fnv1_64
from luno_wf.errors import WorkflowInProgress
from luno_wf.memory import MemConnector

from ..support import Obj, Status, Stores

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def events(n: int) -> list[ConnectorEvent]:
    return [
        ConnectorEvent(id=str(i), foreign_id=f"ext-{i}", type="created", created_at=NOW)
        for i in range(1, n + 1)
    ]


@pytest.mark.parametrize(
    ("text", "unsigned"),
    [("1", 0xAF63BD4C8601B7EE), ("2", 0xAF63BD4C8601B7ED), ("abc", 0xD8DCCA186BAFADCB)],
)
def test_fnv1_64_matches_lunos_vectors(text: str, unsigned: int) -> None:
    assert fnv1_64(text) == unsigned


async def run_connector(parallel: int | None, default_parallel: int | None) -> set[str]:
    seen: set[str] = set()

    async def on_event(api: API[Obj, Status], event: ConnectorEvent) -> None:
        # A redelivered event finds its run in progress already.
        with contextlib.suppress(WorkflowInProgress):
            await api.trigger(event.foreign_id, initial_value=Obj(id=event.id))
        seen.add(event.foreign_id)

    async def step(r: Run[Obj, Status]) -> Status:
        return Status.END

    b = Builder("connector-test", Obj, Status)
    b.add_step(Status.STARTED, step, Status.END)
    b.add_connector("tester", MemConnector(events(22)), on_event, parallel_count=parallel)
    s = Stores()
    options = Options(parallel_count=default_parallel) if default_parallel else None
    async with s.build(b, default_options=options) as wf:
        for _ in range(300):
            if len(seen) == 22:
                break
            await asyncio.sleep(0.01)
        names = [n for n in wf.states() if "connector" in n]
    assert len(names) == (parallel or default_parallel or 1)
    return seen


async def test_connector_events_trigger_runs() -> None:
    assert await run_connector(None, None) == {f"ext-{i}" for i in range(1, 23)}


@pytest.mark.parametrize("shards", [2, 3])
async def test_sharded_connector_loses_no_event(shards: int) -> None:
    # luno's signed hash drops IDs "2", "4", "6", "8" of "1".."22" with two shards.
    assert await run_connector(shards, None) == {f"ext-{i}" for i in range(1, 23)}


async def test_connector_with_default_parallelism_still_starts_consumers() -> None:
    assert await run_connector(None, 2) == {f"ext-{i}" for i in range(1, 23)}
