"""The :class:`~luno_wf.adapter.RecordStore` contract (luno's ``RunRecordStoreTest``).

Subclass :class:`RecordStoreContract` and override ``make_store``::

    class TestMyRecordStore(RecordStoreContract):
        @pytest.fixture
        def make_store(self) -> RecordStoreFactory:
            return factory_of(MyRecordStore)

luno's cases come first, in luno's order, translated to the versioned compare-and-set store
(every update bumps ``meta.version``; records seeded in bulk get distinct foreign ids, since a
foreign id may have only one unfinished run). The extensions (spec §5.7) follow, marked
``conformance_extension``; the Hypothesis state machine last.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import ClassVar, NoReturn

import attrs
import pytest
import pytest_asyncio

from luno_wf import (
    BatchLookup,
    BatchOutboxDeleter,
    BatchStore,
    DeadLetter,
    DeadLetterStore,
    Event,
    HistoryEntry,
    HistoryStore,
    Meta,
    OrderType,
    OutboxDataLister,
    Record,
    RecordStore,
    RunState,
    decode_outbox_data,
    filter_by_created_at_after,
    filter_by_created_at_before,
    filter_by_foreign_id,
    filter_by_run_state,
    filter_by_status,
    make_outbox_event,
)
from luno_wf.errors import InvalidForeignID, RecordNotFound, StaleRecord, WorkflowInProgress

from ._shared import Status, assert_record_equal, bump, dummy_wire_record, utcnow
from .factory import RecordStoreFactory
from .profiles import StatefulCases

__all__ = ["RecordStoreContract"]

WF = "my_workflow"
WF2 = "my_second_workflow"


async def _seed(store: RecordStore, records: list[Record]) -> list[Record]:
    for record in records:
        await store.store(record)
    return records


def _runs(workflow_name: str, n: int, *, created_at: datetime | None = None) -> list[Record]:
    """``n`` dummy runs of distinct foreign ids (so none is "in progress" for another)."""
    return [
        dummy_wire_record(workflow_name, foreign_id=f"Andrew Wormald {i}", created_at=created_at)
        for i in range(n)
    ]


async def _outbox(store: RecordStore, workflow_name: str = WF) -> list[tuple[str, int, str]]:
    """The workflow's outbox rows as ``(run_id, type, record_version)``, in listed order."""
    rows = await store.list_outbox_events(workflow_name, 1000)
    out = []
    for row in rows:
        assert row.workflow_name == workflow_name, f"outbox row of {row.workflow_name!r} listed"
        data = decode_outbox_data(row.data)
        out.append((data.run_id, data.type, data.headers.get("record_version", "")))
    return out


def _entry(record: Record, *, obj: bytes | None = None, scrubbed: bool = False) -> HistoryEntry:
    """The history entry that storing ``record`` appends (``obj``: its snapshot, if kept)."""
    meta = record.meta
    return HistoryEntry(
        workflow_name=record.workflow_name,
        foreign_id=record.foreign_id,
        run_id=record.run_id,
        version=meta.version,
        status=record.status,
        run_state=record.run_state,
        reason="" if scrubbed else meta.run_state_reason,
        actor=meta.actor,
        at=record.updated_at,
        error="" if scrubbed else meta.error,
        trace_id=meta.trace_id,
        object=obj,
    )


def _later(
    record: Record,
    seconds: float,
    *,
    run_state: RunState | None = None,
    status: int | None = None,
    **meta: str,
) -> Record:
    """The next version of ``record``, ``seconds`` later, with a new run state, status, meta."""
    return attrs.evolve(
        bump(record, run_state=run_state, status=status),
        updated_at=record.updated_at + timedelta(seconds=seconds),
        meta=attrs.evolve(record.meta, version=record.meta.version + 1, **meta),
    )


async def _store_at_once(
    store: RecordStore, records: list[Record], *, batch: bool
) -> list[Exception | None]:
    """Store ``records`` (of distinct runs) together; ``None`` or the refusal for each.

    One ``store_many`` call if ``batch``, else concurrent ``store`` calls.
    """
    if batch:
        assert isinstance(store, BatchStore)
        return await store.store_many(records)
    outcomes = await asyncio.gather(*(store.store(r) for r in records), return_exceptions=True)
    return [o if isinstance(o, Exception) else None for o in outcomes]


def _no_history() -> NoReturn:
    pytest.skip("the store keeps no history (optional HistoryStore)")


class RecordStoreContract(StatefulCases):
    """The conformance cases of a record store. Override the ``make_store`` fixture."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.conformance]

    @pytest.fixture
    def make_store(self) -> RecordStoreFactory:
        """Override: return a factory of fresh, empty stores (see :mod:`.factory`)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the make_store fixture to return a "
            "RecordStoreFactory, e.g. factory_of(MyRecordStore)"
        )

    @pytest_asyncio.fixture
    async def store(self, make_store: RecordStoreFactory) -> AsyncIterator[RecordStore]:
        """A fresh store from ``make_store``, closed after the test."""
        async with make_store() as store:
            yield store

    # -- luno's cases ------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_latest(self, store: RecordStore) -> None:
        """Latest returns the stored run, then the same run once updated (luno "Latest")."""
        record = dummy_wire_record(WF)
        await store.store(record)
        assert_record_equal(await store.latest(WF, "Andrew Wormald"), record)

        updated = bump(record, status=int(Status.END), run_state=RunState.COMPLETED)
        await store.store(updated)
        assert_record_equal(await store.latest(WF, "Andrew Wormald"), updated)

    @pytest.mark.asyncio
    async def test_lookup(self, store: RecordStore) -> None:
        """Lookup by run id returns the stored run (luno "Lookup")."""
        record = dummy_wire_record(WF)
        await store.store(record)
        assert_record_equal(await store.lookup(record.run_id), record)

    @pytest.mark.asyncio
    async def test_record_store(self, store: RecordStore) -> None:
        """Storing a looked-up run again updates it, twice in a row (luno "RecordStore")."""
        record = dummy_wire_record(WF)
        await store.store(record)

        expected = bump(await store.lookup(record.run_id), status=int(Status.MIDDLE))
        await store.store(expected)
        assert_record_equal(await store.lookup(record.run_id), expected)

        expected = bump(await store.lookup(record.run_id), status=int(Status.END))
        await store.store(expected)
        assert_record_equal(await store.lookup(record.run_id), expected)

    @pytest.mark.asyncio
    async def test_list_outbox_events(self, store: RecordStore) -> None:
        """Storing a run writes one outbox row naming its topic (luno "ListOutboxEvents")."""
        await store.store(dummy_wire_record(WF))
        rows = await store.list_outbox_events(WF, 1000)
        assert len(rows) == 1, f"expected 1 outbox row, got {len(rows)}"
        assert "outbox-id-" in rows[0].id, f"outbox id {rows[0].id!r} lacks 'outbox-id-'"
        assert rows[0].workflow_name == WF
        data = decode_outbox_data(rows[0].data)
        assert data.type == Status.STARTED
        assert data.headers["topic"] == "my_workflow-1"
        assert data.headers["foreign_id"] == "Andrew Wormald"
        assert data.headers["workflow_name"] == WF

    @pytest.mark.asyncio
    async def test_delete_outbox_event(self, store: RecordStore) -> None:
        """A deleted outbox row is no longer listed (luno "DeleteOutboxEvent")."""
        record = dummy_wire_record(WF)
        await store.store(record)
        await store.lookup(record.run_id)
        rows = await store.list_outbox_events(WF, 1000)
        await store.delete_outbox_event(rows[0].id)
        assert await store.list_outbox_events(WF, 1000) == []

    @pytest.mark.asyncio
    async def test_list_no_workflow_returns_all(self, store: RecordStore) -> None:
        """An empty workflow name lists every workflow; offset is a positional skip."""
        await _seed(store, [*_runs(WF, 501), *_runs(WF2, 499)])

        first = await store.list("", offset=0, limit=53)
        assert len(first) == 53
        second = await store.list("", offset=53, limit=100)
        assert len(second) == 100
        assert first[52].run_id != second[0].run_id, "pages overlap at their boundary"
        assert len(await store.list("", offset=153, limit=847)) == 847
        assert len(await store.list("", offset=950, limit=1000)) == 50
        desc = await store.list("", offset=950, limit=1000, order=OrderType.DESCENDING)
        assert len(desc) == 50

    @pytest.mark.asyncio
    async def test_list_workflow_name(self, store: RecordStore) -> None:
        """Listing one workflow returns exactly its runs (luno "List - WorkflowName")."""
        for i in range(100):
            await store.store(dummy_wire_record(WF, foreign_id=f"a {i}"))
            await store.store(dummy_wire_record(WF2, foreign_id=f"a {i}"))
        rows = await store.list(WF, offset=0, limit=2000)
        assert len(rows) == 100
        assert {r.workflow_name for r in rows} == {WF}

    @pytest.mark.asyncio
    async def test_list_filter_by_foreign_id(self, store: RecordStore) -> None:
        """The foreign-id filter keeps only that id's runs (luno "List - FilterByForeignID")."""
        first, second = "MSDVUI-OBEWF-BYUIOW", "FRELBJK-SRGIUE-RGTJDSF"
        for foreign_id in (first, second):
            # Finished runs: a foreign id may have many of those.
            for _ in range(20):
                run = dummy_wire_record(WF, foreign_id=foreign_id, run_state=RunState.COMPLETED)
                await store.store(run)
        rows = await store.list(WF, offset=0, limit=2000, filters=[filter_by_foreign_id(first)])
        assert len(rows) == 20
        assert {r.foreign_id for r in rows} == {first}
        rows = await store.list(WF, offset=0, limit=100, filters=[filter_by_foreign_id(second)])
        assert len(rows) == 20
        assert {r.foreign_id for r in rows} == {second}
        assert await store.list(WF, limit=100, filters=[filter_by_foreign_id("random")]) == []

    @pytest.mark.asyncio
    async def test_list_filter_by_run_state(self, store: RecordStore) -> None:
        """The run-state filter keeps one or several states (luno "List - FilterByRunState")."""
        counts = {
            RunState.INITIATED: 10,
            RunState.RUNNING: 100,
            RunState.COMPLETED: 20,
            RunState.PAUSED: 3,
            RunState.CANCELLED: 1,
            RunState.DATA_DELETED: 15,
        }
        for state, n in counts.items():
            runs = [
                dummy_wire_record(WF, foreign_id=f"{state.name} {i}", run_state=state)
                for i in range(n)
            ]
            await _seed(store, runs)
        for state, n in counts.items():
            rows = await store.list(WF, limit=2000, filters=[filter_by_run_state(state)])
            assert len(rows) == n, f"{state!r}: expected {n} runs, got {len(rows)}"
            assert {r.run_state for r in rows} == {state}
        both = filter_by_run_state(RunState.RUNNING, RunState.PAUSED)
        rows = await store.list(WF, limit=2000, filters=[both])
        assert len(rows) == 103
        assert {r.run_state for r in rows} == {RunState.RUNNING, RunState.PAUSED}

    @pytest.mark.asyncio
    async def test_list_filter_by_status(self, store: RecordStore) -> None:
        """The status filter keeps one status, up to the limit (luno "List - FilterByStatus")."""
        counts = {Status.STARTED: 10, Status.MIDDLE: 100, Status.END: 20}
        for status, n in counts.items():
            runs = [
                dummy_wire_record(WF, foreign_id=f"{status.name} {i}", status=status)
                for i in range(n)
            ]
            await _seed(store, runs)
        for status, n in counts.items():
            rows = await store.list(WF, limit=100, filters=[filter_by_status(status)])
            assert len(rows) == n, f"{status!r}: expected {n} runs, got {len(rows)}"
            assert {r.status for r in rows} == {status}

    @pytest.mark.asyncio
    async def test_list_filter_by_created_at(self, store: RecordStore) -> None:
        """Created-at filters are ANDed and compare strictly (luno "Filter by Created At")."""
        now = utcnow()
        await _seed(store, _runs(WF, 100, created_at=now))
        minute = timedelta(minutes=1)
        window = [
            filter_by_created_at_after(now - minute),
            filter_by_created_at_before(now + minute),
        ]
        assert len(await store.list(WF, limit=100, filters=window)) == 100
        assert (
            await store.list(WF, limit=100, filters=[filter_by_created_at_after(now + minute)])
            == []
        )
        assert (
            await store.list(WF, limit=100, filters=[filter_by_created_at_before(now - minute)])
            == []
        )

    # -- extensions (spec §5.7) --------------------------------------------------------

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_meta_round_trip(self, store: RecordStore) -> None:
        """Every Meta field survives store, lookup, latest and list, on insert and update."""
        meta = Meta(
            run_state_reason="because",
            status_description="Started",
            version=1,
            trace_origin="main.py:10\nworker.py:20",
            actor="api",
            error="ValueError: no",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            tracestate="vendor=opaque",
        )
        record = dummy_wire_record(WF, meta=meta)
        await store.store(record)
        for updated in (
            record,
            attrs.evolve(
                record,
                meta=Meta(
                    run_state_reason="", status_description="Middle", version=2, actor="step:1"
                ),
            ),
        ):
            if updated is not record:
                await store.store(updated)
            for how, got in (
                ("lookup", await store.lookup(record.run_id)),
                ("latest", await store.latest(WF, record.foreign_id)),
                ("list", (await store.list(WF))[0]),
            ):
                assert got.meta == updated.meta, f"{how}: meta {got.meta!r} != {updated.meta!r}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_lookup_and_latest_missing(self, store: RecordStore) -> None:
        """Unknown run ids and foreign ids raise RecordNotFound; workflows do not mix."""
        with pytest.raises(RecordNotFound):
            await store.lookup(str(uuid.uuid4()))
        with pytest.raises(RecordNotFound):
            await store.latest(WF, "nobody")
        await store.store(dummy_wire_record(WF))
        with pytest.raises(RecordNotFound):
            await store.latest(WF2, "Andrew Wormald")

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_list_order_and_pages(self, store: RecordStore) -> None:
        """List is in first-stored order (reversed for DESCENDING); pages are disjoint."""
        base = utcnow()
        runs = [
            dummy_wire_record(WF, foreign_id=f"f{i}", created_at=base + timedelta(seconds=i))
            for i in range(40)
        ]
        await _seed(store, runs)
        # An update keeps a run's place in the order.
        await store.store(bump(runs[0], run_state=RunState.RUNNING))
        stored = [r.run_id for r in runs]

        for order, expected in (
            (OrderType.ASCENDING, stored),
            (OrderType.DESCENDING, stored[::-1]),
        ):
            whole = [r.run_id for r in await store.list(WF, limit=1000, order=order)]
            assert whole == expected, f"{order!r}: wrong order"
            paged: list[str] = []
            for offset in range(0, 40, 7):
                page = await store.list(WF, offset=offset, limit=7, order=order)
                paged += [r.run_id for r in page]
            assert paged == expected, f"{order!r}: pages overlap or leave gaps"

        assert len(await store.list(WF)) == 25, "the default limit is 25"
        assert len(await store.list(WF, limit=0)) == 25, "limit 0 means 25"
        assert await store.list(WF, offset=40) == []

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_latest_is_newest_created(self, store: RecordStore) -> None:
        """Latest is the most recently created run, not the most recently stored one."""
        t0 = utcnow()
        old = dummy_wire_record(WF, run_state=RunState.COMPLETED, created_at=t0)
        new = dummy_wire_record(WF, created_at=t0 + timedelta(seconds=5))
        await _seed(store, [old, new])
        assert (await store.latest(WF, "Andrew Wormald")).run_id == new.run_id

        # Deleting the old run's data stores it again, after the new run.
        await store.store(bump(old, run_state=RunState.REQUESTED_DATA_DELETED))
        assert (await store.latest(WF, "Andrew Wormald")).run_id == new.run_id

        # A run stored last but created first is not the latest either.
        older = dummy_wire_record(
            WF, run_state=RunState.CANCELLED, created_at=t0 - timedelta(hours=1)
        )
        await store.store(older)
        assert (await store.latest(WF, "Andrew Wormald")).run_id == new.run_id

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_outbox_order_isolation_and_limit(self, store: RecordStore) -> None:
        """Outbox rows list oldest first, only the workflow's own, at most ``limit``."""
        mine, theirs = _runs(WF, 5), _runs(WF2, 3)
        for i, record in enumerate(mine):
            await store.store(record)
            if i < len(theirs):
                await store.store(theirs[i])
        expected = [(r.run_id, int(r.status), "1") for r in mine]
        assert await _outbox(store, WF) == expected
        assert await _outbox(store, WF2) == [(r.run_id, int(r.status), "1") for r in theirs]
        limited = await store.list_outbox_events(WF, 2)
        assert [decode_outbox_data(r.data).run_id for r in limited] == [r.run_id for r in mine[:2]]
        assert len({r.id for r in await store.list_outbox_events(WF, 100)}) == 5, "ids repeat"
        assert await store.list_outbox_events("unknown workflow", 100) == []

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_one_outbox_row_per_store(self, store: RecordStore) -> None:
        """Each store, insert or update, writes exactly one row: the record's outbox event."""
        v1 = dummy_wire_record(WF)
        v2 = bump(v1, status=int(Status.MIDDLE), run_state=RunState.RUNNING)
        v3 = bump(v2, status=int(Status.END), run_state=RunState.COMPLETED)
        await _seed(store, [v1, v2, v3])
        rows = await store.list_outbox_events(WF, 1000)
        assert len(rows) == 3, f"expected 3 outbox rows for 3 stores, got {len(rows)}"
        for row, record in zip(rows, (v1, v2, v3), strict=True):
            expected = decode_outbox_data(make_outbox_event(record)[1])
            got = decode_outbox_data(row.data)
            assert got == expected, f"outbox row of version {record.meta.version}: {got!r}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_stale_record_refused(self, store: RecordStore) -> None:
        """An update whose version is not the stored one plus 1 raises StaleRecord, atomically."""
        v1 = dummy_wire_record(WF)
        v2 = bump(v1, status=int(Status.MIDDLE))
        await _seed(store, [v1, v2])
        for stale in (
            bump(v1, status=int(Status.END)),  # version 2 again
            v1,  # an older version
            bump(bump(v2), status=int(Status.END)),  # a version skipped
        ):
            with pytest.raises(StaleRecord):
                await store.store(stale)
        assert_record_equal(await store.lookup(v1.run_id), v2)
        assert (await store.lookup(v1.run_id)).meta.version == 2
        assert len(await _outbox(store)) == 2, "a refused store wrote an outbox row"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_foreign_id_rule(self, store: RecordStore) -> None:
        """A new run whose foreign id breaks the core's rule is refused, and nothing written.

        Every store keeps the same foreign ids (``luno_wf.check_foreign_id``): 1 to 255
        characters, not only whitespace, no NUL.
        """
        for bad in ("", "   ", "x" * 256, "a\x00b"):
            with pytest.raises(InvalidForeignID):
                await store.store(attrs.evolve(dummy_wire_record(WF), foreign_id=bad))
        assert len(await _outbox(store)) == 0, "a refused store wrote an outbox row"
        longest = attrs.evolve(dummy_wire_record(WF), foreign_id="é" * 255)
        await store.store(longest)
        assert (await store.lookup(longest.run_id)).foreign_id == "é" * 255

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_concurrent_updates_one_wins(self, store: RecordStore) -> None:
        """Of five concurrent updates from the same version, exactly one is stored."""
        v1 = dummy_wire_record(WF)
        await store.store(v1)
        rivals = [bump(v1, status=s) for s in (1, 2, 3, 4, 5)]
        results = await asyncio.gather(*(store.store(r) for r in rivals), return_exceptions=True)
        winners = [r for r, res in zip(rivals, results, strict=True) if res is None]
        losers = [res for res in results if res is not None]
        assert len(winners) == 1, f"expected exactly one winner, got {results!r}"
        assert all(isinstance(e, StaleRecord) for e in losers), f"losers raised {losers!r}"
        assert_record_equal(await store.lookup(v1.run_id), winners[0])
        assert len(await _outbox(store)) == 2

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_one_unfinished_run_per_foreign_id(self, store: RecordStore) -> None:
        """A second unfinished run of a foreign id raises WorkflowInProgress till the first ends."""
        first = dummy_wire_record(WF)
        await store.store(first)
        for state in (RunState.INITIATED, RunState.RUNNING, RunState.PAUSED):
            with pytest.raises(WorkflowInProgress):
                await store.store(dummy_wire_record(WF, run_state=state))
        # Other workflows and other foreign ids are not affected.
        await store.store(dummy_wire_record(WF2))
        await store.store(dummy_wire_record(WF, foreign_id="someone else"))
        assert len(await _outbox(store)) == 2, "a refused insert wrote an outbox row"

        paused = bump(first, run_state=RunState.PAUSED)
        await store.store(paused)
        with pytest.raises(WorkflowInProgress):
            await store.store(dummy_wire_record(WF))
        await store.store(bump(paused, run_state=RunState.CANCELLED))
        second = dummy_wire_record(WF)
        await store.store(second)
        assert (await store.latest(WF, "Andrew Wormald")).run_id == second.run_id

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_concurrent_triggers_one_wins(self, store: RecordStore) -> None:
        """Of five concurrent new runs of one foreign id, exactly one is stored."""
        rivals = [dummy_wire_record(WF) for _ in range(5)]
        results = await asyncio.gather(*(store.store(r) for r in rivals), return_exceptions=True)
        stored = [r for r, res in zip(rivals, results, strict=True) if res is None]
        refused = [res for res in results if res is not None]
        assert len(stored) == 1, f"expected exactly one stored run, got {results!r}"
        assert all(isinstance(e, WorkflowInProgress) for e in refused), f"{refused!r}"
        assert (await store.latest(WF, "Andrew Wormald")).run_id == stored[0].run_id
        assert len(await store.list(WF, limit=100)) == 1

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_delete_outbox_event_missing_is_harmless(self, store: RecordStore) -> None:
        """Deleting an unknown outbox row is not an error and deletes nothing else."""
        await store.store(dummy_wire_record(WF))
        await store.delete_outbox_event("outbox-id-does-not-exist")
        assert len(await store.list_outbox_events(WF, 10)) == 1

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_batch_outbox_delete(self, store: RecordStore) -> None:
        """``delete_outbox_events`` (optional) removes exactly the given rows."""
        if not isinstance(store, BatchOutboxDeleter):
            pytest.skip("the store has no delete_outbox_events (optional BatchOutboxDeleter)")
        await _seed(store, _runs(WF, 4))
        rows = await store.list_outbox_events(WF, 10)
        await store.delete_outbox_events([rows[0].id, rows[2].id, "outbox-id-missing"])
        left = await store.list_outbox_events(WF, 10)
        assert [r.id for r in left] == [rows[1].id, rows[3].id]

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_lookup_many(self, store: RecordStore) -> None:
        """``lookup_many`` (optional) returns the stored records by run id, missing left out."""
        if not isinstance(store, BatchLookup):
            pytest.skip("the store has no lookup_many (optional BatchLookup)")
        runs = _runs(WF, 3)
        await _seed(store, runs)
        found = await store.lookup_many([runs[2].run_id, "missing-run", runs[0].run_id])
        assert set(found) == {runs[0].run_id, runs[2].run_id}
        for record in (runs[0], runs[2]):
            assert_record_equal(found[record.run_id], record)
            assert found[record.run_id].meta == record.meta
        assert await store.lookup_many([]) == {}

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_store_many(self, store: RecordStore) -> None:
        """``store_many`` (optional) stores the records as ``store`` would, one by one.

        A batch mixing valid updates, a stale update, a new run, a new run refused as in
        progress, and an update of a run not stored yet (which inserts it) reports each
        outcome and writes exactly the accepted records and their outbox rows.
        """
        if not isinstance(store, BatchStore):
            pytest.skip("the store has no store_many (optional BatchStore)")
        a, b, c, held = _runs(WF, 4)
        await _seed(store, [a, b, c, held])
        a2 = bump(a, status=int(Status.MIDDLE), run_state=RunState.RUNNING)
        c2 = bump(c, status=int(Status.MIDDLE), run_state=RunState.RUNNING)
        stale_b = bump(bump(b), status=int(Status.END))  # skips version 2
        fresh = dummy_wire_record(WF, foreign_id="someone new")
        blocked = dummy_wire_record(WF, foreign_id=held.foreign_id)  # held is unfinished
        unseen = bump(dummy_wire_record(WF, foreign_id="not stored before"))
        batch = [a2, stale_b, fresh, blocked, c2, unseen]
        before = len(await _outbox(store))

        outcomes = await store.store_many(batch)

        assert len(outcomes) == len(batch), f"one outcome per record expected: {outcomes!r}"
        expected_kinds = [None, StaleRecord, None, WorkflowInProgress, None, None]
        for record, outcome, kind in zip(batch, outcomes, expected_kinds, strict=True):
            if kind is None:
                assert outcome is None, f"{record.run_id}: expected stored, got {outcome!r}"
            else:
                assert isinstance(outcome, kind), f"{record.run_id}: expected {kind.__name__}"
        for record in (a2, c2, fresh, unseen):
            assert_record_equal(await store.lookup(record.run_id), record)
        assert (await store.lookup(b.run_id)).meta.version == 1, "a stale record was written"
        with pytest.raises(RecordNotFound):
            await store.lookup(blocked.run_id)
        rows = (await _outbox(store))[before:]
        assert {(run_id, version) for run_id, _, version in rows} == {
            (r.run_id, str(r.meta.version)) for r in (a2, c2, fresh, unseen)
        }, f"outbox rows of the accepted records only, got {rows!r}"

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_store_many_refuses_a_run_twice(self, store: RecordStore) -> None:
        """``store_many`` (optional) raises ValueError for a batch naming a run twice."""
        if not isinstance(store, BatchStore):
            pytest.skip("the store has no store_many (optional BatchStore)")
        v1 = dummy_wire_record(WF)
        await store.store(v1)
        v2 = bump(v1, status=int(Status.MIDDLE))
        with pytest.raises(ValueError, match=v1.run_id):
            await store.store_many([v2, bump(v2)])
        assert (await store.lookup(v1.run_id)).meta.version == 1
        assert await store.store_many([]) == []

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_decoded_outbox_listing(self, store: RecordStore) -> None:
        """``list_outbox_data`` (optional) matches ``list_outbox_events`` row for row."""
        if not isinstance(store, OutboxDataLister):
            pytest.skip("the store has no list_outbox_data (optional OutboxDataLister)")
        await _seed(store, _runs(WF, 3))
        encoded = await store.list_outbox_events(WF, 10)
        decoded = await store.list_outbox_data(WF, 10)
        assert [r.id for r in encoded] == [row_id for row_id, _ in decoded]
        assert [decode_outbox_data(r.data) for r in encoded] == [d for _, d in decoded]
        assert len(await store.list_outbox_data(WF, 2)) == 2

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_dead_letters(self, store: RecordStore) -> None:
        """``set_aside`` (optional) keeps dead letters: listed oldest first, deleted by id."""
        if not isinstance(store, DeadLetterStore):
            pytest.skip("the store keeps no dead letters (optional DeadLetterStore)")
        now = utcnow()
        letters = [
            DeadLetter(
                id=str(uuid.uuid4()),
                workflow_name=name,
                process_name="started-consumer-1-of-1",
                topic=f"{name}-1",
                event=Event(
                    id=i,
                    foreign_id=str(uuid.uuid4()),
                    type=1,
                    headers={"record_version": f"bad {i}"},
                    created_at=now,
                ),
                reason=f"reason {i}",
                at=now,
            )
            for i, name in enumerate((WF, WF, WF2))
        ]
        for letter in letters:
            await store.set_aside(letter)
        assert await store.list_dead_letters(WF) == letters[:2]
        assert await store.list_dead_letters() == letters
        assert await store.list_dead_letters(limit=1) == letters[:1]
        await store.delete_dead_letter(letters[0].id)
        await store.delete_dead_letter("no-such-letter")
        assert await store.list_dead_letters(WF) == letters[1:2]

    # -- history (optional HistoryStore) -----------------------------------------------

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_history_one_entry_per_write(self, store: RecordStore) -> None:
        """Each write appends one entry, the record's fields as stored, oldest first."""
        if not isinstance(store, HistoryStore):
            _no_history()
        v1 = dummy_wire_record(WF, meta=Meta(version=1, actor="api", trace_id="t-1"))
        v2 = _later(v1, 1, run_state=RunState.RUNNING, status=Status.MIDDLE, actor="step:1")
        v3 = _later(
            v2,
            2,
            run_state=RunState.PAUSED,
            actor="step:2",
            run_state_reason="paused after 3 errors",
            error="ValueError: bad input",
            trace_id="t-3",
        )
        other = dummy_wire_record(WF2, meta=Meta(version=1, actor="api"))
        await _seed(store, [v1, other, v2, v3])

        assert await store.history(v1.run_id) == [_entry(v1), _entry(v2), _entry(v3)]
        assert await store.history(other.run_id) == [_entry(other)]
        with pytest.raises(RecordNotFound):
            await store.history(str(uuid.uuid4()))

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_history_none_for_refused_writes(self, store: RecordStore) -> None:
        """Stale writes, refused inserts and updates, and lost races leave no entry."""
        if not isinstance(store, HistoryStore):
            _no_history()
        v1 = dummy_wire_record(WF)
        v2 = _later(v1, 1, status=Status.MIDDLE)
        await _seed(store, [v1, v2])
        for stale in (_later(v1, 5, status=Status.END), v1, _later(_later(v2, 1), 1)):
            with pytest.raises(StaleRecord):
                await store.store(stale)
        assert await store.history(v1.run_id) == [_entry(v1), _entry(v2)]

        blocked = dummy_wire_record(WF)  # v1's run is unfinished
        with pytest.raises(WorkflowInProgress):
            await store.store(blocked)
        with pytest.raises(RecordNotFound):
            await store.history(blocked.run_id)
        done = dummy_wire_record(WF, foreign_id="Andrew Wormald", run_state=RunState.COMPLETED)
        await store.store(done)
        with pytest.raises(WorkflowInProgress):
            await store.store(_later(done, 1, run_state=RunState.RUNNING))
        assert await store.history(done.run_id) == [_entry(done)]

        rivals = [_later(v2, 1, status=s) for s in (1, 2, 3, 4, 5)]
        results = await asyncio.gather(*(store.store(r) for r in rivals), return_exceptions=True)
        [winner] = [r for r, res in zip(rivals, results, strict=True) if res is None]
        assert await store.history(v1.run_id) == [_entry(v1), _entry(v2), _entry(winner)]

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_history_of_concurrent_writers(self, store: RecordStore) -> None:
        """Rivals writing one run from one version leave one entry for it: the winner's.

        Three runs, three rounds; in each, five writers per run store the next version at
        once, each with its own status, actor and object (snapshots on). With ``store_many``
        one writer of each round writes all three runs in one batch. Of a foreign id's
        concurrent new runs, only the stored one has history.
        """
        if not isinstance(store, HistoryStore):
            _no_history()
        store.configure_history(WF, objects=True)
        runs = _runs(WF, 3)
        await _seed(store, runs)
        written = {run.run_id: [run] for run in runs}
        batched = isinstance(store, BatchStore)
        for round_ in range(3):
            rivals = {
                run_id: [
                    attrs.evolve(
                        _later(
                            versions[-1],
                            1,
                            run_state=RunState.RUNNING,
                            status=1 + (round_ + writer) % 3,
                            actor=f"writer {writer}",
                            trace_id=f"round {round_} writer {writer}",
                        ),
                        object=b'{"round": %d, "writer": %d}' % (round_, writer),
                    )
                    for writer in range(5)
                ]
                for run_id, versions in written.items()
            }

            # Writer by writer, each writer's outcome for each run (in ``rivals`` order).
            results = await asyncio.gather(
                *(
                    _store_at_once(
                        store, [mine[w] for mine in rivals.values()], batch=batched and w == 0
                    )
                    for w in range(5)
                )
            )
            for index, (run_id, mine) in enumerate(rivals.items()):
                outcomes = [by_writer[index] for by_writer in results]
                winners = [r for r, o in zip(mine, outcomes, strict=True) if o is None]
                losers = [o for o in outcomes if o is not None]
                assert len(winners) == 1, f"round {round_}, run {run_id}: {outcomes!r}"
                assert all(isinstance(o, StaleRecord) for o in losers), f"{losers!r}"
                written[run_id].append(winners[0])
            for run_id, versions in written.items():
                got = await store.history(run_id)
                assert [e.version for e in got] == list(range(1, round_ + 3)), f"{got!r}"
                assert got == [_entry(r, obj=r.object) for r in versions], f"round {round_}"

        newcomers = [dummy_wire_record(WF, foreign_id="one foreign id") for _ in range(5)]
        outcomes = await _store_at_once(store, newcomers, batch=False)
        [stored] = [r for r, o in zip(newcomers, outcomes, strict=True) if o is None]
        assert await store.history(stored.run_id) == [_entry(stored, obj=stored.object)]
        for record, outcome in zip(newcomers, outcomes, strict=True):
            if outcome is not None:
                assert isinstance(outcome, WorkflowInProgress), f"{outcome!r}"
                with pytest.raises(RecordNotFound):
                    await store.history(record.run_id)

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_history_of_store_many(self, store: RecordStore) -> None:
        """``store_many`` appends entries for exactly the records it applies, scrubbing too."""
        if not isinstance(store, HistoryStore):
            _no_history()
        if not isinstance(store, BatchStore):
            pytest.skip("the store has no store_many (optional BatchStore)")
        a, b, c, held = _runs(WF, 4)
        await _seed(store, [a, b, c, held])
        a2 = _later(a, 1, run_state=RunState.RUNNING, actor="step:a")
        stale_b = _later(_later(b, 1), 1)  # skips version 2
        fresh = dummy_wire_record(WF, foreign_id="someone new")
        blocked = dummy_wire_record(WF, foreign_id=held.foreign_id)
        c2 = _later(c, 1, run_state=RunState.RUNNING, error="e")
        unseen = bump(dummy_wire_record(WF, foreign_id="not stored before"))
        outcomes = await store.store_many([a2, stale_b, fresh, blocked, c2, unseen])
        assert [type(o) for o in outcomes] == [
            type(None),
            StaleRecord,
            type(None),
            WorkflowInProgress,
            type(None),
            type(None),
        ]
        assert await store.history(a.run_id) == [_entry(a), _entry(a2)]
        assert await store.history(b.run_id) == [_entry(b)]
        assert await store.history(fresh.run_id) == [_entry(fresh)]
        with pytest.raises(RecordNotFound):
            await store.history(blocked.run_id)
        assert await store.history(c.run_id) == [_entry(c), _entry(c2)]
        assert await store.history(unseen.run_id) == [_entry(unseen)]

        # A batch of updates only, one of them a data deletion, with object snapshots on.
        store.configure_history(WF, objects=True)
        a3 = _later(a2, 1, run_state=RunState.PAUSED, run_state_reason="why", error="boom")
        c3 = _later(c2, 1, run_state=RunState.DATA_DELETED)
        assert await store.store_many([a3, c3]) == [None, None]
        assert await store.history(a.run_id) == [_entry(a), _entry(a2), _entry(a3, obj=b"{}")]
        assert await store.history(c.run_id) == [
            _entry(c, scrubbed=True),
            _entry(c2, scrubbed=True),
            _entry(c3, scrubbed=True),
        ]

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_history_oldest_first_by_version(self, store: RecordStore) -> None:
        """Entries come by version, even when a later write has an earlier ``updated_at``."""
        if not isinstance(store, HistoryStore):
            _no_history()
        first, second = _runs(WF, 2)
        written = {first.run_id: [first], second.run_id: [second]}
        await _seed(store, [first, second])
        for i in range(6):
            for versions in written.values():
                # The clock steps back on every other write.
                versions.append(_later(versions[-1], -3 if i % 2 else 1, actor=f"write {i}"))
                await store.store(versions[-1])
        for run_id, versions in written.items():
            got = await store.history(run_id)
            assert [e.version for e in got] == list(range(1, 8)), f"{run_id}: {got!r}"
            assert got == [_entry(r) for r in versions]

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_history_scrubbed_on_data_deletion(self, store: RecordStore) -> None:
        """Deleting a run's data empties every entry's object, reason and error, in one go."""
        if not isinstance(store, HistoryStore):
            _no_history()
        store.configure_history(WF, objects=True)
        v1 = attrs.evolve(dummy_wire_record(WF), object=b'{"email": "alice@example.com"}')
        v2 = attrs.evolve(
            _later(
                v1,
                1,
                run_state=RunState.PAUSED,
                run_state_reason="alice@example.com bounced",
                error="SMTPError: alice@example.com",
                actor="step:1",
                trace_id="t-2",
            ),
            object=b'{"email": "alice@example.com", "tries": 3}',
        )
        v3 = _later(
            v2, 1, run_state=RunState.REQUESTED_DATA_DELETED, run_state_reason="GDPR request"
        )
        neighbour = dummy_wire_record(WF, foreign_id="someone else")
        await _seed(store, [v1, v2, v3, neighbour])
        assert await store.history(v1.run_id) == [
            _entry(v1, obj=v1.object),
            _entry(v2, obj=v2.object),
            _entry(v3, obj=v3.object),
        ], "a requested deletion scrubs nothing yet"

        v4 = attrs.evolve(
            _later(v3, 1, run_state=RunState.DATA_DELETED, actor="delete"), object=b"{}"
        )
        await store.store(v4)
        assert await store.history(v1.run_id) == [
            _entry(v1, scrubbed=True),
            _entry(v2, scrubbed=True),
            _entry(v3, scrubbed=True),
            _entry(v4, scrubbed=True),
        ]
        assert await store.history(neighbour.run_id) == [_entry(neighbour, obj=b"{}")]

        # A refused deletion scrubs nothing.
        other = attrs.evolve(dummy_wire_record(WF2), object=b'{"email": "bob@example.com"}')
        store.configure_history(WF2, objects=True)
        await store.store(other)
        with pytest.raises(StaleRecord):
            await store.store(_later(_later(other, 1), 1, run_state=RunState.DATA_DELETED))
        assert await store.history(other.run_id) == [_entry(other, obj=other.object)]

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_prune_history_keeps_each_runs_newest(self, store: RecordStore) -> None:
        """Pruning deletes entries older than the cutoff in batches, never a run's newest."""
        if not isinstance(store, HistoryStore):
            _no_history()
        t0 = utcnow()
        a = [dummy_wire_record(WF, created_at=t0)]
        for _ in range(3):
            a.append(_later(a[-1], 1, run_state=RunState.RUNNING))  # at t0 + 1, 2, 3 s
        b = [dummy_wire_record(WF2, created_at=t0)]
        b.append(_later(b[-1], 1, run_state=RunState.RUNNING))
        lone = dummy_wire_record(WF, foreign_id="lone", created_at=t0 - timedelta(days=1))
        await _seed(store, [*a, *b, lone])

        assert await store.prune_history(t0 + timedelta(hours=1), workflow_name=WF2) == 1
        assert await store.history(b[0].run_id) == [_entry(b[1])]
        cutoff = t0 + timedelta(seconds=1.5)  # a's versions 1 and 2 are older
        assert await store.prune_history(cutoff, batch_size=1) == 2
        assert await store.history(a[0].run_id) == [_entry(a[2]), _entry(a[3])]
        assert await store.prune_history(t0 + timedelta(hours=1), batch_size=2) == 1
        assert await store.history(a[0].run_id) == [_entry(a[3])]
        assert await store.history(lone.run_id) == [_entry(lone)], "a run's only entry stays"
        assert await store.prune_history(t0 + timedelta(days=1)) == 0

        with pytest.raises(ValueError, match="batch_size"):
            await store.prune_history(t0, batch_size=0)
        with pytest.raises(ValueError):
            await store.prune_history(t0.replace(tzinfo=None))

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_prune_history_in_small_batches(self, store: RecordStore) -> None:
        """Batches smaller than the work, over entries sharing one ``at``, miss nothing."""
        if not isinstance(store, HistoryStore):
            _no_history()
        t0 = utcnow()
        runs = _runs(WF, 5, created_at=t0)
        latest = []
        for run in runs:
            versions = [run]
            for _ in range(3):
                versions.append(_later(versions[-1], 0))  # four entries, all at t0
            await _seed(store, versions)
            latest.append(versions[-1])
        assert await store.prune_history(t0 + timedelta(seconds=1), batch_size=2) == 15
        for run, newest in zip(runs, latest, strict=True):
            assert await store.history(run.run_id) == [_entry(newest)]

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_history_can_be_turned_off(self, store: RecordStore) -> None:
        """With history off for a workflow, its writes append nothing; others still do."""
        if not isinstance(store, HistoryStore):
            _no_history()
        store.configure_history(WF, enabled=False)
        v1 = dummy_wire_record(WF)
        v2 = _later(v1, 1, run_state=RunState.RUNNING)
        other = dummy_wire_record(WF2)
        await _seed(store, [v1, v2, other])
        v3, extra = _later(v2, 1), _later(other, 1)
        if isinstance(store, BatchStore):
            assert await store.store_many([v3, extra]) == [None, None]
        else:
            await _seed(store, [v3, extra])
        assert await store.history(v1.run_id) == []
        assert await store.history(other.run_id) == [_entry(other), _entry(extra)]

        store.configure_history(WF)  # on again: later writes have entries
        v4 = _later(v3, 1, run_state=RunState.COMPLETED)
        await store.store(v4)
        assert await store.history(v1.run_id) == [_entry(v4)]

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_history_object_snapshots(self, store: RecordStore) -> None:
        """Objects are kept in entries only for workflows that turned snapshots on."""
        if not isinstance(store, HistoryStore):
            _no_history()
        store.configure_history(WF2, objects=True)
        plain = dummy_wire_record(WF)
        snapped = [dummy_wire_record(WF2)]
        for n in (1, 2):
            snapped.append(attrs.evolve(_later(snapped[-1], 1), object=b'{"n": %d}' % n))
        await _seed(store, [plain, *snapped])
        assert await store.history(plain.run_id) == [_entry(plain, obj=None)]
        assert await store.history(snapped[0].run_id) == [_entry(r, obj=r.object) for r in snapped]

    # -- Hypothesis state machine ------------------------------------------------------

    @pytest.mark.conformance_stateful
    def test_stateful_agrees_with_reference(
        self, make_store: RecordStoreFactory, request: pytest.FixtureRequest
    ) -> None:
        """Random operations give the same results on this store and on MemRecordStore."""
        from ._recordstore_machine import run_machine

        run_machine(
            make_store,
            self._stateful_settings(request),
        )
