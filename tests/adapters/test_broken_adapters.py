"""A suite that cannot fail proves nothing: each known defect is reported by named cases.

Each case runs a whole contract class, in a fresh pytest session (``pytester``), against a
memory adapter with one defect (see ``broken.py``), and checks that the cases expected to
catch it failed. The inner session uses pytest-asyncio's strict mode and no project
configuration, as an adapter author's project might.
"""

from __future__ import annotations

import textwrap

import attrs
import pytest

INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


@attrs.frozen
class Defect:
    name: str
    contract: str
    fixture: str
    factory: str
    caught_by: frozenset[str]


DEFECTS = [
    Defect(
        "stale write accepted",
        "RecordStoreContract",
        "make_store",
        "factory_of(broken.StaleWriteAccepted)",
        frozenset(
            {
                "test_stale_record_refused",
                "test_concurrent_updates_one_wins",
                "test_stateful_agrees_with_reference",
            }
        ),
    ),
    Defect(
        "outbox row missing on update",
        "RecordStoreContract",
        "make_store",
        "factory_of(broken.OutboxMissingOnUpdate)",
        frozenset({"test_one_outbox_row_per_store", "test_stateful_agrees_with_reference"}),
    ),
    Defect(
        "latest by last stored",
        "RecordStoreContract",
        "make_store",
        "factory_of(broken.LatestByLastStored)",
        frozenset({"test_latest_is_newest_created", "test_stateful_agrees_with_reference"}),
    ),
    Defect(
        "history entry of a refused write",
        "RecordStoreContract",
        "make_store",
        "factory_of(broken.HistoryOfRefusedWrites)",
        frozenset({"test_history_none_for_refused_writes", "test_stateful_agrees_with_reference"}),
    ),
    Defect(
        "history entry of a lost race",
        "RecordStoreContract",
        "make_store",
        "factory_of(broken.HistoryOfTheLastRival)",
        frozenset({"test_history_none_for_refused_writes", "test_history_of_concurrent_writers"}),
    ),
    Defect(
        "lost un-acked event",
        "EventStreamerContract",
        "make_streamer",
        "factory_of(broken.LostUnackedEvent)",
        frozenset({"test_unacked_events_redelivered", "test_stateful_delivery"}),
    ),
    Defect(
        "shard ignored",
        "ShardedStreamerContract",
        "make_streamer",
        "factory_of(broken.ShardIgnored)",
        frozenset(
            {
                "test_each_event_reaches_exactly_its_shard_in_order",
                "test_a_shard_name_resumes_past_the_other_shards_events",
                "test_receivers_of_one_shard_name_share_its_events",
            }
        ),
    ),
    Defect(
        "two holders of one role",
        "RoleSchedulerContract",
        "make_schedulers",
        "factory_of(lambda n: [broken.TwoHoldersOfOneRole()] * n)",
        frozenset(
            {
                "test_locking",
                "test_releasing",
                "test_cancelled_wait_never_takes_the_role",
                "test_mutual_exclusion",
            }
        ),
    ),
    Defect(
        "timeout due at now not listed",
        "TimeoutStoreContract",
        "make_timeout_store",
        "factory_of(broken.DueStrictlyBeforeNow)",
        frozenset({"test_list_valid_boundary", "test_stateful_agrees_with_reference"}),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("defect", DEFECTS, ids=[d.name for d in DEFECTS])
def test_suite_reports_defect(pytester: pytest.Pytester, defect: Defect) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_broken=textwrap.dedent(
            f"""
            from datetime import timedelta

            import pytest
            from hypothesis import Phase, settings
            from luno_wf_adaptertest import {defect.contract}, factory_of

            from tests.adapters import broken


            class TestBroken({defect.contract}):
                # Memory adapters answer at once: fail fast when an event never comes.
                recv_timeout = timedelta(seconds=1)

                def hypothesis_settings(self, base):
                    # Finding the defect is the point here, not shrinking its example.
                    return settings(base, phases=[Phase.explicit, Phase.reuse, Phase.generate])

                @pytest.fixture
                def {defect.fixture}(self):
                    return {defect.factory}
            """
        )
    )
    result = pytester.inline_run()
    failed = {report.nodeid.rsplit("::", 1)[-1] for report in result.getfailures()}
    passed = {report.nodeid.rsplit("::", 1)[-1] for report in result.listoutcomes()[0]}
    missed = defect.caught_by - failed
    assert not missed, (
        f"the suite missed {defect.name!r} in {sorted(missed)}; failed: {sorted(failed)}"
    )
    assert passed, f"nothing passed against {defect.name!r}: the harness itself is broken"


@pytest.mark.slow
def test_healthy_adapters_pass_in_strict_mode(pytester: pytest.Pytester) -> None:
    """The control: the same harness, the memory adapters as shipped, nothing fails."""
    pytester.makeini(INI)
    pytester.makepyfile(
        test_healthy=textwrap.dedent(
            """
            import pytest
            from luno_wf_adaptertest import (
                ConnectorContract,
                EventStreamerContract,
                RecordStoreContract,
                RoleSchedulerContract,
                TimeoutStoreContract,
                factory_of,
            )

            from luno_wf.memory import (
                MemConnector,
                MemRecordStore,
                MemRoleScheduler,
                MemStreamer,
                MemTimeoutStore,
            )


            class TestStore(RecordStoreContract):
                @pytest.fixture
                def make_store(self):
                    return factory_of(MemRecordStore)


            class TestTimeouts(TimeoutStoreContract):
                @pytest.fixture
                def make_timeout_store(self):
                    return factory_of(MemTimeoutStore)


            class TestStreamer(EventStreamerContract):
                max_examples = 5

                @pytest.fixture
                def make_streamer(self):
                    return factory_of(MemStreamer)


            def replicas(n):
                first = MemRoleScheduler()
                return [first, *(first.replica() for _ in range(n - 1))]


            class TestRoles(RoleSchedulerContract):
                @pytest.fixture
                def make_schedulers(self):
                    return factory_of(replicas)


            class TestConnector(ConnectorContract):
                @pytest.fixture
                def make_connector(self):
                    return factory_of(MemConnector)
            """
        )
    )
    result = pytester.inline_run("-m", "conformance")
    passed, skipped, failed = result.listoutcomes()
    assert failed == [], [r.nodeid for r in failed]
    # Only the role-loss and stall cases skip: no revoke_role or stall_member hook was given.
    assert [r.nodeid.rsplit("::", 1)[-1] for r in skipped] == [
        "test_role_lost_raises",
        "test_a_dead_member_hands_over_after_its_lease",
        "test_a_stalled_member_wakes_without_its_roles",
    ]
    assert len(passed) > 50
