"""A Hypothesis state machine: a record store and :class:`MemRecordStore` side by side.

Random inserts, updates (some stale), batches of both (``store_many``, when the adapter has
it), lookups, latest, filtered and paged lists, outbox listing and deletion go to both;
every result and every refusal must agree. When the adapter keeps history
(``HistoryStore``), each written run's history, history settings per workflow, and pruning
go to both too. Foreign ids come from a small pool, so "one
unfinished run per foreign id" is exercised often.
Finished runs only move to finished states (as the engine never revives a run).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from luno_wf import (
    BatchOutboxDeleter,
    BatchStore,
    HistoryEntry,
    HistoryStore,
    Meta,
    OrderType,
    OutboxData,
    Record,
    RecordFilter,
    RecordStore,
    RunState,
    decode_outbox_data,
)
from luno_wf.memory import MemRecordStore

from ._harness import Harness, agree
from .factory import RecordStoreFactory
from .strategies import FINISHED_RUN_STATES, json_objects, metas, record_filters, storable_text

__all__ = ["RecordStoreMachine", "run_machine"]

WORKFLOWS = ("wf one", "wf-two")
FOREIGN_IDS = ("alice", "bob", "carol")
BASE = datetime(2024, 5, 1, tzinfo=UTC)
OFFSETS = st.integers(-100, 100).map(lambda s: BASE + timedelta(seconds=s))
CUTOFFS = st.integers(-100, 600).map(lambda s: BASE + timedelta(seconds=s))
STATUSES = st.integers(1, 4)
FILTERS = st.lists(
    record_filters(foreign_ids=st.sampled_from(FOREIGN_IDS), statuses=STATUSES, times=OFFSETS),
    max_size=3,
)


def _diff(got: object, want: object) -> str:
    if isinstance(got, Record) and isinstance(want, Record):
        fields = [
            f"{a.name}: got {getattr(got, a.name)!r}, expected {getattr(want, a.name)!r}"
            for a in attrs.fields(Record)
            if getattr(got, a.name) != getattr(want, a.name)
        ]
        return "; ".join(fields)
    return f"got {got!r}, expected {want!r}"


def _same_records(got: object, want: object, what: str) -> None:
    if isinstance(got, list) and isinstance(want, list):
        got_ids = [r.run_id for r in got]
        want_ids = [r.run_id for r in want]
        assert got_ids == want_ids, f"{what}: run ids {got_ids} != expected {want_ids}"
        for g, w in zip(got, want, strict=True):
            assert g == w, f"{what}: {_diff(g, w)}"
        return
    assert got == want, f"{what}: {_diff(got, want)}"


class RecordStoreMachine(RuleBasedStateMachine):
    """Drives the adapter and the reference with the same operations."""

    def __init__(self, factory: RecordStoreFactory) -> None:
        super().__init__()
        self.harness: Harness[RecordStore] = Harness(factory)
        self.reference = MemRecordStore()
        self.run_ids: list[str] = []
        self.inserts = 0
        self.keeps_history = isinstance(self.harness.adapter, HistoryStore)

    def teardown(self) -> None:
        """Close the adapter and the loop."""
        self.harness.close()

    def _lookup_reference(self, run_id: str) -> Record:
        return self.harness.run(self.reference.lookup(run_id))

    @rule(
        workflow=st.sampled_from(WORKFLOWS),
        foreign_id=st.sampled_from(FOREIGN_IDS),
        run_state=st.sampled_from(tuple(RunState)[1:]),
        status=STATUSES,
        obj=json_objects(),
        meta=metas(version=st.just(1)),
        created_at=OFFSETS,
    )
    def insert(
        self,
        workflow: str,
        foreign_id: str,
        run_state: RunState,
        status: int,
        obj: bytes,
        meta: Meta,
        created_at: datetime,
    ) -> None:
        """Store a new run."""
        self.inserts += 1
        # Distinct creation times per run keep "newest created" unambiguous.
        created_at += timedelta(microseconds=self.inserts)
        record = Record(
            workflow_name=workflow,
            foreign_id=foreign_id,
            run_id=str(uuid.uuid4()),
            run_state=run_state,
            status=status,
            object=obj,
            created_at=created_at,
            updated_at=created_at,
            meta=meta,
        )
        _, _, error = agree(self.harness, self.reference, lambda s: s.store(record), "insert")
        if error is None:
            self.run_ids.append(record.run_id)
        self._check_run(record)

    @precondition(lambda self: self.run_ids)
    @rule(
        data=st.data(),
        index=st.integers(0, 1000),
        status=STATUSES,
        obj=json_objects(),
        version_shift=st.sampled_from((0, 0, 0, 0, -1, 1, -2)),
        reason=storable_text(max_size=8),
        actor=st.sampled_from(("", "api", "step:1", "operator:alice")),
        error=st.sampled_from(("", "", "ValueError: x")),
        later=st.integers(0, 100),
    )
    def update(
        self,
        data: st.DataObject,
        index: int,
        status: int,
        obj: bytes,
        version_shift: int,
        reason: str,
        actor: str,
        error: str,
        later: int,
    ) -> None:
        """Store a new version of a known run; a non-zero shift makes it stale."""
        current = self._lookup_reference(self.run_ids[index % len(self.run_ids)])
        states = FINISHED_RUN_STATES if current.run_state.finished() else tuple(RunState)[1:]
        record = attrs.evolve(
            current,
            run_state=data.draw(st.sampled_from(states), label="run_state"),
            status=status,
            object=obj,
            updated_at=current.updated_at + timedelta(seconds=later),
            meta=attrs.evolve(
                current.meta,
                version=max(0, current.meta.version + 1 + version_shift),
                run_state_reason=reason,
                actor=actor,
                error=error,
            ),
        )
        agree(self.harness, self.reference, lambda s: s.store(record), "update")
        self._check_run(record)

    @precondition(lambda self: isinstance(self.harness.adapter, BatchStore))
    @rule(data=st.data(), size=st.integers(1, 5))
    def store_batch(self, data: st.DataObject, size: int) -> None:
        """Several new runs and updates (some stale) in one ``store_many`` call.

        The reference stores them one by one in order; each outcome must agree. Foreign ids
        may repeat within a batch, so the order of the outcomes matters.
        """
        batch: list[Record] = []
        for _ in range(size):
            is_update: bool = data.draw(st.booleans(), label="is_update")
            if self.run_ids and is_update:
                index = data.draw(st.integers(0, 1000), label="index")
                run_id = self.run_ids[index % len(self.run_ids)]
                if any(r.run_id == run_id for r in batch):
                    continue
                current = self._lookup_reference(run_id)
                states = (
                    FINISHED_RUN_STATES if current.run_state.finished() else tuple(RunState)[1:]
                )
                shift = data.draw(st.sampled_from((0, 0, 0, -1, 1)), label="version_shift")
                batch.append(
                    attrs.evolve(
                        current,
                        run_state=data.draw(st.sampled_from(states), label="run_state"),
                        status=data.draw(STATUSES, label="status"),
                        updated_at=current.updated_at + timedelta(seconds=1),
                        meta=attrs.evolve(
                            current.meta, version=max(0, current.meta.version + 1 + shift)
                        ),
                    )
                )
            else:
                self.inserts += 1
                created_at = data.draw(OFFSETS, label="created_at")
                created_at += timedelta(microseconds=self.inserts)
                batch.append(
                    Record(
                        workflow_name=data.draw(st.sampled_from(WORKFLOWS), label="workflow"),
                        foreign_id=data.draw(st.sampled_from(FOREIGN_IDS), label="foreign_id"),
                        run_id=str(uuid.uuid4()),
                        run_state=data.draw(
                            st.sampled_from(tuple(RunState)[1:]), label="run_state"
                        ),
                        status=data.draw(STATUSES, label="status"),
                        object=b"{}",
                        created_at=created_at,
                        updated_at=created_at,
                        meta=Meta(version=1),
                    )
                )
        want: list[type[Exception] | None] = []
        for record in batch:
            _, error = self.harness.outcome(self.reference.store(record))
            want.append(None if error is None else type(error))
        adapter = self.harness.adapter
        assert isinstance(adapter, BatchStore)
        outcomes = self.harness.run(adapter.store_many(batch))
        got = [None if outcome is None else type(outcome) for outcome in outcomes]
        assert got == want, f"store_many outcomes {got} != one by one {want}"
        for record, outcome in zip(batch, outcomes, strict=True):
            if outcome is None and record.run_id not in self.run_ids:
                self.run_ids.append(record.run_id)
            self._check_run(record)

    def _check_run(self, record: Record) -> None:
        """After a store, the run, its history and its foreign id's latest run agree."""
        self.lookup_run(record.run_id)
        self.latest(record.workflow_name, record.foreign_id)
        if self.keeps_history:
            self.history_of(record.run_id)

    def history_of(self, run_id: str) -> None:
        """The run's history on both sides (or RecordNotFound on both)."""

        async def history(store: RecordStore) -> list[HistoryEntry]:
            assert isinstance(store, HistoryStore)
            return await store.history(run_id)

        want, got, _ = agree(self.harness, self.reference, history, "history")
        assert got == want, f"history({run_id!r}): got {got!r}, expected {want!r}"

    @precondition(lambda self: self.keeps_history)
    @rule(
        workflow=st.sampled_from(WORKFLOWS),
        enabled=st.sampled_from((True, True, False)),
        objects=st.booleans(),
    )
    def configure_history(self, workflow: str, enabled: bool, objects: bool) -> None:
        """Change a workflow's history settings, on both sides."""
        adapter = self.harness.adapter
        assert isinstance(adapter, HistoryStore)
        for store in (self.reference, adapter):
            store.configure_history(workflow, enabled=enabled, objects=objects)

    @precondition(lambda self: self.keeps_history)
    @rule(index=st.integers(0, 1000), unknown=st.booleans())
    def history(self, index: int, unknown: bool) -> None:
        """A run's history (or an unknown run's)."""
        if unknown or not self.run_ids:
            self.history_of(str(uuid.uuid4()))
        else:
            self.history_of(self.run_ids[index % len(self.run_ids)])

    @precondition(lambda self: self.keeps_history)
    @rule(
        before=CUTOFFS,
        workflow=st.sampled_from((None, *WORKFLOWS)),
        batch_size=st.integers(1, 4),
    )
    def prune_history(self, before: datetime, workflow: str | None, batch_size: int) -> None:
        """Prune old entries on both sides: the same count, then the same histories."""

        async def prune(store: RecordStore) -> int:
            assert isinstance(store, HistoryStore)
            return await store.prune_history(before, workflow_name=workflow, batch_size=batch_size)

        want, got, _ = agree(self.harness, self.reference, prune, "prune_history")
        assert got == want, f"prune_history({before}, {workflow!r}, {batch_size}): {got} != {want}"
        for run_id in self.run_ids:
            self.history_of(run_id)

    @rule(index=st.integers(0, 1000), unknown=st.booleans())
    def lookup(self, index: int, unknown: bool) -> None:
        """Look a run up (or an unknown run id)."""
        if unknown or not self.run_ids:
            self.lookup_run(str(uuid.uuid4()))
        else:
            self.lookup_run(self.run_ids[index % len(self.run_ids)])

    def lookup_run(self, run_id: str) -> None:
        """Look ``run_id`` up on both sides."""
        want, got, _ = agree(self.harness, self.reference, lambda s: s.lookup(run_id), "lookup")
        _same_records(got, want, f"lookup({run_id!r})")

    @rule(workflow=st.sampled_from(WORKFLOWS), foreign_id=st.sampled_from(FOREIGN_IDS))
    def latest(self, workflow: str, foreign_id: str) -> None:
        """The latest run of a foreign id."""
        want, got, _ = agree(
            self.harness, self.reference, lambda s: s.latest(workflow, foreign_id), "latest"
        )
        _same_records(got, want, f"latest({workflow!r}, {foreign_id!r})")

    @rule(
        workflow=st.sampled_from(("", *WORKFLOWS)),
        offset=st.integers(0, 8),
        limit=st.integers(0, 8),
        order=st.sampled_from(OrderType),
        filters=FILTERS,
    )
    def list_runs(
        self,
        workflow: str,
        offset: int,
        limit: int,
        order: OrderType,
        filters: list[RecordFilter],
    ) -> None:
        """A page of runs, filtered."""
        want, got, _ = agree(
            self.harness,
            self.reference,
            lambda s: s.list(workflow, offset=offset, limit=limit, order=order, filters=filters),
            "list",
        )
        _same_records(got, want, f"list({workflow!r}, {offset=}, {limit=}, {order!r}, {filters})")

    def _outbox(self, store: RecordStore, workflow: str, limit: int) -> list[OutboxData]:
        rows = self.harness.run(store.list_outbox_events(workflow, limit))
        for row in rows:
            assert row.workflow_name == workflow, f"outbox of {workflow!r} lists {row!r}"
        return [decode_outbox_data(row.data) for row in rows]

    @rule(workflow=st.sampled_from(WORKFLOWS), limit=st.integers(1, 10))
    def list_outbox(self, workflow: str, limit: int) -> None:
        """The oldest unpublished outbox rows."""
        want = self._outbox(self.reference, workflow, limit)
        got = self._outbox(self.harness.adapter, workflow, limit)
        assert got == want, f"list_outbox_events({workflow!r}, {limit}): {got} != {want}"

    @rule(workflow=st.sampled_from(WORKFLOWS), indices=st.lists(st.integers(0, 20), max_size=3))
    def delete_outbox(self, workflow: str, indices: list[int]) -> None:
        """Delete some outbox rows (the batch call when the adapter has it)."""
        stores = (self.reference, self.harness.adapter)
        rows = [self.harness.run(s.list_outbox_events(workflow, 1000)) for s in stores]
        want, got = ([decode_outbox_data(r.data) for r in listed] for listed in rows)
        assert got == want, f"list_outbox_events({workflow!r}): {got} != {want}"
        for store, listed in zip(stores, rows, strict=True):
            ids = [listed[i].id for i in indices if i < len(listed)] + ["outbox-id-unknown"]
            if len(ids) > 1 and isinstance(store, BatchOutboxDeleter):
                self.harness.run(store.delete_outbox_events(ids))
            else:
                for id in ids:
                    self.harness.run(store.delete_outbox_event(id))


def run_machine(factory: RecordStoreFactory, hypothesis_settings: settings) -> None:
    """Run the machine against stores from ``factory``."""

    class Bound(RecordStoreMachine):
        def __init__(self) -> None:
            super().__init__(factory)

    run_state_machine_as_test(Bound, settings=hypothesis_settings)
