"""The :class:`~luno_wf.adapter.TimeoutStore` contract (luno's ``RunTimeoutStoreTest``).

Subclass :class:`TimeoutStoreContract` and override ``make_timeout_store``::

    class TestMyTimeoutStore(TimeoutStoreContract):
        @pytest.fixture
        def make_timeout_store(self) -> TimeoutStoreFactory:
            return factory_of(MyTimeoutStore)

luno's two cases address the seeded timeouts by the ids the store listed (luno assumes ids
1, 2, 3); the extensions (spec §5.7) follow, then the Hypothesis state machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

import pytest
import pytest_asyncio

from luno_wf import TimeoutRecord, TimeoutStore

from ._shared import assert_within, utcnow
from .factory import TimeoutStoreFactory
from .profiles import StatefulCases

__all__ = ["TimeoutStoreContract"]

WF = "example"


async def _seed(store: TimeoutStore, now: datetime) -> None:
    for run_id in ("1", "2", "3"):
        await store.create(WF, "andrew", run_id, 1, now - timedelta(hours=1))


def _expect(rows: Sequence[TimeoutRecord], run_ids: Sequence[str], now: datetime) -> None:
    """Luno's ``expect`` helper: the rows, in order, are the seeded ones of ``run_ids``."""
    got = [r.run_id for r in rows]
    assert got == list(run_ids), f"expected run ids {list(run_ids)} in id order, got {got}"
    for row in rows:
        assert row.workflow_name == WF
        assert row.foreign_id == "andrew"
        assert row.status == 1
        assert not row.completed, f"timeout {row.id} is listed as completed"
        assert_within(row.expire_at, now - timedelta(hours=1), f"timeout {row.id} expire_at")
        assert_within(row.created_at, now, f"timeout {row.id} created_at")


class TimeoutStoreContract(StatefulCases):
    """The conformance cases of a timeout store. Override ``make_timeout_store``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.conformance]

    @pytest.fixture
    def make_timeout_store(self) -> TimeoutStoreFactory:
        """Override: return a factory of fresh, empty timeout stores (see :mod:`.factory`)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the make_timeout_store fixture to return "
            "a TimeoutStoreFactory, e.g. factory_of(MyTimeoutStore)"
        )

    @pytest_asyncio.fixture
    async def timeout_store(
        self, make_timeout_store: TimeoutStoreFactory
    ) -> AsyncIterator[TimeoutStore]:
        """A fresh store from ``make_timeout_store``, closed after the test."""
        async with make_timeout_store() as store:
            yield store

    # -- luno's cases ------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_complete_and_cancel_timeouts(self, timeout_store: TimeoutStore) -> None:
        """Completed and cancelled timeouts are no longer valid (luno "Complete and Cancel")."""
        now = utcnow()
        await _seed(timeout_store, now)
        ids = [r.id for r in await timeout_store.list(WF)]
        assert len(ids) == 3, f"expected 3 timeouts, got {ids}"
        await timeout_store.complete(ids[1])
        await timeout_store.cancel(ids[2])
        _expect(await timeout_store.list_valid(WF, 1, now), ["1"], now)

    @pytest.mark.asyncio
    async def test_list_timeouts(self, timeout_store: TimeoutStore) -> None:
        """List returns the workflow's timeouts in creation order (luno "List timeouts")."""
        now = utcnow()
        await _seed(timeout_store, now)
        _expect(await timeout_store.list(WF), ["1", "2", "3"], now)

    # -- extensions (spec §5.7) --------------------------------------------------------

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_round_trip_and_increasing_ids(self, timeout_store: TimeoutStore) -> None:
        """Every field is kept exactly and ids increase in creation order."""
        expire_at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=utcnow().tzinfo)
        await timeout_store.create(WF, "foreign id", "run id", 7, expire_at)
        await timeout_store.create(WF, "foreign id", "run id 2", 8, expire_at)
        first, second = await timeout_store.list(WF)
        assert (first.workflow_name, first.foreign_id, first.run_id, first.status) == (
            WF,
            "foreign id",
            "run id",
            7,
        )
        assert first.expire_at == expire_at, f"expire_at {first.expire_at!r} != {expire_at!r}"
        assert first.id < second.id, f"ids do not increase: {first.id}, {second.id}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_list_valid_boundary(self, timeout_store: TimeoutStore) -> None:
        """A timeout expiring exactly at ``now`` is valid; one a microsecond later is not."""
        now = utcnow()
        await timeout_store.create(WF, "f", "at", 1, now)
        await timeout_store.create(WF, "f", "after", 1, now + timedelta(microseconds=1))
        await timeout_store.create(WF, "f", "before", 1, now - timedelta(microseconds=1))
        valid = [r.run_id for r in await timeout_store.list_valid(WF, 1, now)]
        assert valid == ["at", "before"], f"expected ['at', 'before'] due at now, got {valid}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_isolation_by_workflow_and_status(self, timeout_store: TimeoutStore) -> None:
        """List and list_valid never return another workflow's or another status's timeouts."""
        now = utcnow()
        due = now - timedelta(minutes=1)
        await timeout_store.create(WF, "f", "mine", 1, due)
        await timeout_store.create(WF, "f", "other status", 2, due)
        await timeout_store.create("other workflow", "f", "theirs", 1, due)
        assert [r.run_id for r in await timeout_store.list_valid(WF, 1, now)] == ["mine"]
        assert [r.run_id for r in await timeout_store.list_valid(WF, 2, now)] == ["other status"]
        assert [r.run_id for r in await timeout_store.list(WF)] == ["mine", "other status"]
        assert [r.run_id for r in await timeout_store.list("other workflow")] == ["theirs"]
        assert await timeout_store.list("no such workflow") == []

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_cancel_unknown_is_harmless(self, timeout_store: TimeoutStore) -> None:
        """Cancelling an id that does not exist is not an error and removes nothing."""
        now = utcnow()
        await _seed(timeout_store, now)
        ids = [r.id for r in await timeout_store.list(WF)]
        await timeout_store.cancel(max(ids) + 1000)
        await timeout_store.cancel(ids[0])
        await timeout_store.cancel(ids[0])  # twice
        _expect(await timeout_store.list(WF), ["2", "3"], now)

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_completed_not_listed(self, timeout_store: TimeoutStore) -> None:
        """A completed timeout is neither listed nor valid; the others stay in id order."""
        now = utcnow()
        await _seed(timeout_store, now)
        ids = [r.id for r in await timeout_store.list(WF)]
        await timeout_store.complete(ids[0])
        _expect(await timeout_store.list(WF), ["2", "3"], now)
        _expect(await timeout_store.list_valid(WF, 1, now), ["2", "3"], now)

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_create_is_idempotent_per_timer_and_version(
        self, timeout_store: TimeoutStore
    ) -> None:
        """A repeated create of (run, status, timer, version) is ignored; others are kept."""
        now = utcnow()
        expire = now - timedelta(minutes=1)
        for _ in range(2):  # a redelivered event repeats every create
            await timeout_store.create(WF, "andrew", "1", 1, expire, timer=0, version=2)
            await timeout_store.create(WF, "andrew", "1", 1, expire, timer=1, version=2)
        await timeout_store.create(WF, "andrew", "1", 1, expire, timer=0, version=4)
        rows = await timeout_store.list_valid(WF, 1, now)
        assert [(r.timer, r.version) for r in rows] == [(0, 2), (1, 2), (0, 4)], (
            "expected one row per (timer, version), in creation order, carrying both"
        )

    # -- Hypothesis state machine ------------------------------------------------------

    @pytest.mark.conformance_stateful
    def test_stateful_agrees_with_reference(
        self, make_timeout_store: TimeoutStoreFactory, request: pytest.FixtureRequest
    ) -> None:
        """Random operations give the same results on this store and on MemTimeoutStore."""
        from ._timeoutstore_machine import run_machine

        run_machine(
            make_timeout_store,
            self._stateful_settings(request),
        )
