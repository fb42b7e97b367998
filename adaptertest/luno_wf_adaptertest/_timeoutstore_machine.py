"""A Hypothesis state machine: a timeout store and :class:`MemTimeoutStore` side by side.

Random creates, completes, cancels (of known and unknown ids), lists and due-lists go to
both. Ids are the stores' own, so rows are matched by position in id order; everything
else must agree exactly. Expiry times and ``now`` come from a few shared instants, so
``expire_at == now`` happens often.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from luno_wf import TimeoutRecord, TimeoutStore
from luno_wf.memory import MemTimeoutStore

from ._harness import Harness
from ._shared import assert_within, utcnow
from .factory import TimeoutStoreFactory

__all__ = ["TimeoutStoreMachine", "run_machine"]

WORKFLOWS = ("wf one", "wf-two")
BASE = datetime(2024, 5, 1, tzinfo=UTC)
INSTANTS = st.sampled_from((-60, -1, 0, 1, 60)).map(lambda s: BASE + timedelta(seconds=s))
STATUSES = st.integers(1, 3)


def _comparable(rows: list[TimeoutRecord]) -> list[tuple[object, ...]]:
    return [
        (r.workflow_name, r.foreign_id, r.run_id, r.status, r.completed, r.expire_at) for r in rows
    ]


class TimeoutStoreMachine(RuleBasedStateMachine):
    """Drives the adapter and the reference with the same operations."""

    def __init__(self, factory: TimeoutStoreFactory) -> None:
        super().__init__()
        self.harness: Harness[TimeoutStore] = Harness(factory)
        self.reference: TimeoutStore = MemTimeoutStore()

    def teardown(self) -> None:
        """Close the adapter and the loop."""
        self.harness.close()

    def _both(
        self, what: str, workflow: str, due: tuple[int, datetime] | None = None
    ) -> tuple[list[int], ...]:
        """List (or, given ``(status, now)``, due-list) both stores; they must agree.

        Returns:
            The reference's ids, then the adapter's, in listed order.

        """
        listed = []
        for store in (self.reference, self.harness.adapter):
            if due is None:
                rows = self.harness.run(store.list(workflow))
            else:
                rows = self.harness.run(store.list_valid(workflow, *due))
            ids = [r.id for r in rows]
            assert ids == sorted(set(ids)), f"{what}: ids not unique and increasing: {ids}"
            listed.append(rows)
        want, got = listed
        assert _comparable(got) == _comparable(want), (
            f"{what}: got {_comparable(got)}, expected {_comparable(want)}"
        )
        now = utcnow()
        for row in got:
            assert_within(row.created_at, now, f"{what}: timeout {row.id} created_at")
        return tuple([r.id for r in rows] for rows in listed)

    @rule(
        workflow=st.sampled_from(WORKFLOWS),
        foreign_id=st.sampled_from(("alice", "bob")),
        run_id=st.sampled_from(("r1", "r2", "r3")),
        status=STATUSES,
        expire_at=INSTANTS,
    )
    def create(
        self, workflow: str, foreign_id: str, run_id: str, status: int, expire_at: datetime
    ) -> None:
        """Create a timeout."""
        for store in (self.reference, self.harness.adapter):
            self.harness.run(store.create(workflow, foreign_id, run_id, status, expire_at))
        # The new timeout is due exactly at its expiry time.
        self.list_valid(workflow, status, expire_at)

    @rule(workflow=st.sampled_from(WORKFLOWS), index=st.integers(0, 20), cancel=st.booleans())
    def finish(self, workflow: str, index: int, cancel: bool) -> None:
        """Complete or cancel the index-th listed timeout of a workflow."""
        want_ids, got_ids = self._both("list before finish", workflow)
        if not want_ids:
            return
        index %= len(want_ids)
        for store, ids in ((self.reference, want_ids), (self.harness.adapter, got_ids)):
            if cancel:
                self.harness.run(store.cancel(ids[index]))
            else:
                self.harness.run(store.complete(ids[index]))

    @rule()
    def cancel_unknown(self) -> None:
        """Cancel an id no store assigned: nothing changes."""
        for store in (self.reference, self.harness.adapter):
            self.harness.run(store.cancel(2**40))

    @rule(workflow=st.sampled_from(WORKFLOWS))
    def list_timeouts(self, workflow: str) -> None:
        """List a workflow's timeouts."""
        self._both(f"list({workflow!r})", workflow)

    @rule(workflow=st.sampled_from(WORKFLOWS), status=STATUSES, now=INSTANTS)
    def list_valid(self, workflow: str, status: int, now: datetime) -> None:
        """List the timeouts of a status due at ``now``."""
        self._both(f"list_valid({workflow!r}, {status}, {now})", workflow, (status, now))


def run_machine(factory: TimeoutStoreFactory, hypothesis_settings: settings) -> None:
    """Run the machine against stores from ``factory``."""

    class Bound(TimeoutStoreMachine):
        def __init__(self) -> None:
            super().__init__(factory)

    run_state_machine_as_test(Bound, settings=hypothesis_settings)
