"""The suite's whole-workflow cases: adapters under test driving the real engine.

luno's acceptance test (spec §5.2) runs a workflow with steps, a timeout and five shards
per step on the streamer under test; its connector test (spec §5.5) feeds a workflow from
the connector under test. Everything else is in memory, with a fake clock for timeouts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from luno_wf import API, Builder, ConnectorConstructor, ConnectorEvent, EventStreamer, Run
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer, MemTimeoutStore
from luno_wf.testing import FakeClock, await_timeout_insert, require

from ._shared import SyncStatus, User, unique, within_timeout

__all__ = ["CONNECTOR_SEEDS", "run_acceptance", "run_connector_case"]

_FAST = timedelta(milliseconds=200)

CONNECTOR_SEEDS = (
    ConnectorEvent(
        id="1", foreign_id="SKDJF-2304893-SDFKJBSD", type="", created_at=datetime.now(UTC)
    ),
    ConnectorEvent(
        id="2", foreign_id="LSKDF-23OU5QL-23K45B23", type="", created_at=datetime.now(UTC)
    ),
)
"""luno's two seed events of the connector case."""


async def _set_email(r: Run[User, SyncStatus]) -> SyncStatus:
    r.object.email = "andrew@workflow.com"
    return SyncStatus.EMAIL_SET


async def _cool_down_until(r: Run[User, SyncStatus], now: datetime) -> datetime | None:
    return now + timedelta(hours=1) if r.object.country_code == "GB" else None


async def _cooled_down(r: Run[User, SyncStatus], now: datetime) -> SyncStatus:
    if r.object.email == "andrew@workflow.com":
        return SyncStatus.REGULATION_TIMEOUT
    return r.skip()


async def _set_uid(r: Run[User, SyncStatus]) -> SyncStatus:
    r.object.uid = str(uuid.uuid4())
    return SyncStatus.COMPLETED


async def run_acceptance(streamer: EventStreamer, limit: timedelta) -> None:
    """Luno's "Acceptance test - full workflow run through" on ``streamer``."""
    clock = FakeClock(datetime(2023, 4, 9, 8, 30, tzinfo=UTC))
    b = Builder(unique("sync user 2"), User, SyncStatus)
    b.add_step(
        SyncStatus.STARTED,
        _set_email,
        SyncStatus.EMAIL_SET,
        polling_frequency=_FAST,
        parallel_count=5,
    )
    b.add_timeout(
        SyncStatus.EMAIL_SET,
        _cool_down_until,
        _cooled_down,
        SyncStatus.REGULATION_TIMEOUT,
        polling_frequency=_FAST,
    )
    b.add_step(
        SyncStatus.REGULATION_TIMEOUT,
        _set_uid,
        SyncStatus.COMPLETED,
        polling_frequency=_FAST,
        parallel_count=5,
    )
    wf = b.build(
        streamer,
        MemRecordStore(),
        MemRoleScheduler(),
        timeout_store=MemTimeoutStore(),
        clock=clock,
    )
    async with wf:
        run_id = await wf.trigger("1", initial_value=User(country_code="GB"))
        await await_timeout_insert(
            wf, "1", run_id, SyncStatus.EMAIL_SET, timeout=limit.total_seconds()
        )
        clock.advance(timedelta(hours=1))
        run = await within_timeout(
            wf.await_status("1", run_id, SyncStatus.COMPLETED), limit, "run 1 to complete"
        )
    assert run.object.email == "andrew@workflow.com", f"email is {run.object.email!r}"
    assert str(run.status) == "Completed", f"status is {run.status!r}"
    assert run.object.uid, "uid was not set"


async def _set_connector_email(r: Run[User, SyncStatus]) -> SyncStatus:
    r.object.email = "connector@workflow.com"
    return SyncStatus.EMAIL_SET


async def _trigger_from(api: API[User, SyncStatus], event: ConnectorEvent) -> None:
    await api.trigger(event.foreign_id, initial_value=User(uid=event.foreign_id))


async def run_connector_case(
    constructor: ConnectorConstructor, seeds: Sequence[ConnectorEvent], limit: timedelta
) -> None:
    """Luno's ``RunConnectorTest``: each seed event triggers a run that reaches EMAIL_SET."""
    b = Builder(unique("connector-test"), User, SyncStatus)
    b.add_connector("tester", constructor, _trigger_from)
    b.add_step(SyncStatus.STARTED, _set_connector_email, SyncStatus.EMAIL_SET)
    wf = b.build(MemStreamer(), MemRecordStore(), MemRoleScheduler())
    async with wf:
        for seed in seeds:
            await require(
                wf,
                seed.foreign_id,
                SyncStatus.EMAIL_SET,
                User(uid=seed.foreign_id, email="connector@workflow.com"),
                timeout=limit.total_seconds(),
            )
