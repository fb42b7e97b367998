"""The service layer on the in-memory store and on PostgreSQL (each test runs on both)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import attrs
import pytest
from luno_wf_ops import OpsService, RunQuery, Verb
from luno_wf_ops.errors import ReasonRequired, SelectionChanged, Unsupported
from luno_wf_postgres import PostgresRecordStore
from psycopg import sql

from luno_wf import RecordStore, RunState
from luno_wf.errors import CallbackNotAccepted, RecordNotFound, UnableToPause, UnableToResume
from luno_wf.memory import MemRecordStore

from .support import T0, WORKFLOW, OrderStatus, build, put, record, seed


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> RecordStore:
    if request.param == "memory":
        return MemRecordStore()
    pool = request.getfixturevalue("pg_pool")
    return PostgresRecordStore(pool, schema=request.getfixturevalue("pg_schema"))


@pytest.fixture
def service(store: RecordStore) -> OpsService:
    """The service with the orders workflow loaded."""
    return OpsService(store, workflows=[build(store)])


@pytest.fixture
def bare(store: RecordStore) -> OpsService:
    """The service on the store alone."""
    return OpsService(store)


def ids(rows: Sequence[Any]) -> list[str]:
    return [row.foreign_id for row in rows]


async def test_pages_are_newest_first_and_disjoint(bare: OpsService) -> None:
    await seed(bare.store, 7)
    first = await bare.list_runs(limit=3)
    second = await bare.list_runs(limit=3, cursor=first.next_cursor)
    third = await bare.list_runs(limit=3, cursor=second.next_cursor)
    assert ids(first.rows) == ["order-6", "order-5", "order-4"]
    assert ids(second.rows) == ["order-3", "order-2", "order-1"]
    assert ids(third.rows) == ["order-0"]
    assert third.next_cursor is None


async def test_a_cursor_stays_valid_while_runs_are_added_and_move(bare: OpsService) -> None:
    runs = await seed(bare.store, 6)
    first = await bare.list_runs(limit=2)
    # New runs arrive and a run on a later page moves: the next page neither repeats nor
    # skips a run.
    await put(bare.store, record("order-new", created_at=T0 + timedelta(hours=1)))
    await bare.act(runs[2].run_id, Verb.PAUSE, reason="look", operator="alice")
    rest = await bare.list_runs(limit=10, cursor=first.next_cursor)
    assert ids(first.rows) == ["order-5", "order-4"]
    assert ids(rest.rows) == ["order-3", "order-2", "order-1", "order-0"]


async def test_a_bad_cursor_or_limit_is_refused(bare: OpsService) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await bare.list_runs(cursor="nonsense")
    with pytest.raises(ValueError, match="limit"):
        await bare.list_runs(limit=0)


async def test_filters(bare: OpsService) -> None:
    await seed(bare.store, 6)
    other = record("order-0", workflow="refunds", created_at=T0 + timedelta(days=1))
    await put(bare.store, other)

    async def found(**query: Any) -> list[str]:
        page = await bare.list_runs(RunQuery(**query), limit=50)
        return sorted(f"{r.workflow_name}/{r.foreign_id}" for r in page.rows)

    assert await found(workflow="refunds") == ["refunds/order-0"]
    paused = ["orders/order-1", "orders/order-3", "orders/order-5"]
    assert await found(statuses=("PAID",)) == paused
    assert await found(statuses=("paid",)) == paused  # any case
    assert await found(statuses=(str(int(OrderStatus.PAID)),)) == paused
    assert await found(run_states=(RunState.PAUSED,)) == paused
    assert await found(foreign_id="order-0") == ["orders/order-0", "refunds/order-0"]
    assert await found(workflow="orders", foreign_id="order-0") == ["orders/order-0"]
    assert await found(created_after=T0 + timedelta(minutes=4), workflow="orders") == [
        "orders/order-5"
    ]
    assert await found(created_before=T0 + timedelta(minutes=1)) == ["orders/order-0"]
    assert await found(updated_after=T0 + timedelta(hours=1)) == ["refunds/order-0"]
    assert len(await found(updated_before=T0 + timedelta(hours=1))) == 6
    assert await found(statuses=("PAID",), run_states=(RunState.RUNNING,)) == []
    assert await bare.count_runs(RunQuery(statuses=("AWAITING_PAYMENT",))) == 4


async def test_status_names_come_from_the_loaded_enum(
    service: OpsService, bare: OpsService
) -> None:
    # A record without a status description (written elsewhere): the store alone knows
    # only its number; the loaded workflow names it.
    plain = attrs.evolve(
        record("order-x"), meta=attrs.evolve(record("x").meta, status_description="")
    )
    await put(service.store, plain)
    assert (await bare.list_runs()).rows[0].status_name == str(int(OrderStatus.AWAITING_PAYMENT))
    assert (await service.list_runs()).rows[0].status_name == "AWAITING_PAYMENT"
    found = await service.list_runs(RunQuery(statuses=("awaiting_payment",)))
    assert ids(found.rows) == ["order-x"]


async def test_a_loaded_workflows_runs_match_a_status_name_as_they_are_shown(
    service: OpsService, bare: OpsService
) -> None:
    # A description that disagrees with the enum (written before a member was renamed):
    # with the workflow loaded, the run is shown, and found, by its enum member's name.
    stale = attrs.evolve(
        record("order-s"), meta=attrs.evolve(record("s").meta, status_description="UNPAID")
    )
    await put(service.store, stale, record("r-1", workflow="refunds"))
    (row,) = (await service.list_runs(RunQuery(foreign_id="order-s"))).rows
    assert row.status_name == "AWAITING_PAYMENT"

    async def found(on: OpsService, status: str) -> list[str]:
        page = await on.list_runs(RunQuery(statuses=(status,)))
        return sorted(ids(page.rows))

    assert await found(service, "AWAITING_PAYMENT") == ["order-s", "r-1"]  # r-1: described
    assert await found(service, "UNPAID") == []
    assert await found(bare, "UNPAID") == ["order-s"]  # the store alone: the record's word
    assert await found(service, str(int(OrderStatus.AWAITING_PAYMENT))) == ["order-s", "r-1"]


async def test_counts_per_status_and_run_state(service: OpsService) -> None:
    await seed(service.store, 5)
    counts = {(c.status_name, c.run_state): c.count for c in await service.counts()}
    assert counts == {
        ("AWAITING_PAYMENT", RunState.RUNNING): 3,
        ("PAID", RunState.PAUSED): 2,
    }
    only = await service.counts(RunQuery(run_states=(RunState.PAUSED,)))
    assert [(c.status_name, c.count) for c in only] == [("PAID", 2)]


async def test_a_run_is_decoded_when_its_workflow_is_loaded(
    service: OpsService, bare: OpsService
) -> None:
    (run,) = await put(service.store, record("order-1"))
    detail = await service.run(run.run_id)
    assert detail.object_type == "Order"
    assert detail.object_repr == "Order(id='order-1', amount=100)"
    assert detail.object_json == {"id": "order-1", "amount": 100}
    raw = await bare.run(run.run_id)
    assert (raw.object_type, raw.object_repr) == ("", "")
    assert raw.object_json == {"id": "order-1", "amount": 100}
    assert raw.to_json()["meta"]["version"] == 1


async def test_an_object_that_does_not_decode_is_shown_raw(service: OpsService) -> None:
    (run,) = await put(service.store, record("order-1", obj=b"\x00not json"))
    detail = await service.run(run.run_id)
    assert detail.decode_error
    assert detail.object_json is None
    assert detail.to_json()["object_base64"] == "AG5vdCBqc29u"


async def test_each_action_is_one_versioned_write_with_its_reason(service: OpsService) -> None:
    (run,) = await put(service.store, record("order-1"))
    paused = await service.act(run.run_id, Verb.PAUSE, reason="card fraud check", operator="ann")
    assert (paused.row.run_state, paused.row.version, paused.row.reason) == (
        RunState.PAUSED,
        2,
        "card fraud check",
    )
    assert paused.actor == "operator:ann"
    stored = await service.store.lookup(run.run_id)
    assert stored.meta.version == 2
    if hasattr(stored.meta, "actor"):  # the core records the writer once history lands
        assert stored.meta.actor == "operator:ann"
    resumed = await service.act(run.run_id, Verb.RESUME, reason="", operator="ann")
    assert (resumed.row.run_state, resumed.row.version) == (RunState.RUNNING, 3)
    cancelled = await service.act(run.run_id, Verb.CANCEL, reason="customer asked", operator="bo")
    assert cancelled.row.run_state == RunState.CANCELLED
    deleted = await service.act(run.run_id, Verb.DELETE_DATA, reason="GDPR", operator="bo")
    assert (deleted.row.run_state, deleted.row.version) == (RunState.REQUESTED_DATA_DELETED, 5)


async def test_refused_actions_write_nothing(service: OpsService) -> None:
    (run,) = await put(service.store, record("order-1"))
    with pytest.raises(UnableToResume):
        await service.act(run.run_id, Verb.RESUME, reason="", operator="ann")
    with pytest.raises(ReasonRequired):
        await service.act(run.run_id, Verb.CANCEL, reason="  ", operator="ann")
    with pytest.raises(ValueError, match="identity"):
        await service.act(run.run_id, Verb.PAUSE, reason="", operator="")
    with pytest.raises(RecordNotFound):
        await service.act("no-such-run", Verb.PAUSE, reason="", operator="ann")
    await service.act(run.run_id, Verb.PAUSE, reason="", operator="ann")
    with pytest.raises(UnableToPause):
        await service.act(run.run_id, Verb.PAUSE, reason="", operator="ann")
    assert (await service.store.lookup(run.run_id)).meta.version == 2


async def test_a_run_not_yet_picked_up_can_be_cancelled(service: OpsService) -> None:
    (run,) = await put(service.store, record("order-1", OrderStatus.CREATED, RunState.INITIATED))
    done = await service.act(run.run_id, Verb.CANCEL, reason="duplicate", operator="ann")
    assert done.row.run_state == RunState.CANCELLED


async def test_bulk_preview_then_apply(service: OpsService) -> None:
    await seed(service.store, 6)
    query = RunQuery(workflow=WORKFLOW)
    preview = await service.preview(query, Verb.RESUME)
    assert (preview.matched, preview.eligible) == (6, 3)
    result = await service.act_bulk(query, Verb.RESUME, reason="fixed", operator="ann", expected=3)
    assert (len(result.done), result.failed) == (3, {})
    assert await service.count_runs(RunQuery(run_states=(RunState.PAUSED,))) == 0
    preview = await service.preview(query, Verb.RESUME)
    assert preview.eligible == 0


async def test_bulk_refuses_when_more_runs_are_eligible_than_confirmed(
    service: OpsService,
) -> None:
    await seed(service.store, 6)
    with pytest.raises(SelectionChanged, match="3 runs are eligible"):
        await service.act_bulk(
            RunQuery(workflow=WORKFLOW), Verb.RESUME, reason="", operator="ann", expected=2
        )
    assert await service.count_runs(RunQuery(run_states=(RunState.PAUSED,))) == 3


class NoHistoryStore:
    """A record store without the HistoryStore capability (the Protocol's methods only)."""

    def __init__(self) -> None:
        self._inner = MemRecordStore()
        self.store = self._inner.store
        self.lookup = self._inner.lookup
        self.latest = self._inner.latest
        self.list = self._inner.list
        self.list_outbox_events = self._inner.list_outbox_events
        self.delete_outbox_event = self._inner.delete_outbox_event


async def test_history_says_plainly_when_the_store_keeps_none() -> None:
    store: Any = NoHistoryStore()
    bare = OpsService(store)
    (run,) = await put(store, record("order-1"))
    view = await bare.history(run.run_id)
    assert (view.available, view.items) == (False, [])
    assert "keeps no history" in view.note
    with pytest.raises(Unsupported, match="keeps no history"):
        await bare.prune_history(timedelta(days=30))


async def test_history_shows_who_did_what(service: OpsService) -> None:
    (run,) = await put(service.store, record("order-1"))
    await service.act(run.run_id, Verb.PAUSE, reason="check", operator="ann")
    view = await service.history(run.run_id)
    assert view.available
    assert [(i.version, i.status_name, i.run_state, i.reason, i.actor) for i in view.items] == [
        (1, "AWAITING_PAYMENT", RunState.RUNNING, "", ""),
        (2, "AWAITING_PAYMENT", RunState.PAUSED, "check", "operator:ann"),
    ]
    # The first entry is as old as the seeded record (long ago): pruned; the newest stays.
    assert await service.prune_history(timedelta(days=30)) == 1
    assert [i.version for i in (await service.history(run.run_id)).items] == [2]


async def test_inspection(service: OpsService) -> None:
    (run,) = await put(service.store, record("order-1"))
    inspection = await service.inspect(run.run_id)
    assert inspection.verbs == [Verb.PAUSE, Verb.CANCEL]
    assert inspection.next_statuses == ["PAID"]
    assert inspection.outbox_pending is True  # the store wrote its event, unpublished
    # The workflow's own report (Workflow.inspect), its workflow being built on this store.
    assert inspection.report.startswith(f"Run {run.run_id} of workflow 'orders'")
    assert "AWAITING_PAYMENT" in inspection.report


async def test_stuck_runs_outbox_and_workflows(service: OpsService) -> None:
    await seed(service.store, 4)
    count, page = await service.stuck(timedelta(hours=1))
    assert count == 2  # the running ones, written long ago; paused runs are not stuck
    assert {r.run_state for r in page.rows} == {RunState.RUNNING}
    (stat,) = await service.outbox()
    assert (stat.workflow_name, stat.pending) == (WORKFLOW, 4)
    (summary,) = await service.workflows()
    assert (summary.name, summary.runs, summary.loaded) == (WORKFLOW, 4, True)
    assert summary.statuses == ["CREATED", "AWAITING_PAYMENT", "PAID", "SHIPPED"]
    assert "stateDiagram-v2" in service.workflow(WORKFLOW).mermaid()
    with pytest.raises(Unsupported, match="--app"):
        service.workflow("refunds")


async def test_the_engine_honours_an_operators_pause_and_resume() -> None:
    store = MemRecordStore()
    wf = build(store)
    service = OpsService(store, workflows=[wf])
    async with wf:
        run_id = await wf.trigger("order-1")
        await wf.await_status("order-1", run_id, OrderStatus.AWAITING_PAYMENT)
        await service.act(run_id, Verb.PAUSE, reason="hold", operator="ann")
        with pytest.raises(CallbackNotAccepted):
            await wf.callback("order-1", OrderStatus.AWAITING_PAYMENT, b"{}")
        await service.act(run_id, Verb.RESUME, reason="", operator="ann")
        await asyncio.sleep(0)
        await wf.callback("order-1", OrderStatus.AWAITING_PAYMENT, b"{}")
        done = await wf.await_status("order-1", run_id, OrderStatus.SHIPPED)
    assert done.run_state == RunState.COMPLETED


async def test_consumer_lag_is_unknown_to_the_memory_store() -> None:
    view = await OpsService(MemRecordStore()).lag()
    assert (view.available, view.consumers) == (False, [])
    assert "PostgreSQL event stream only" in view.note


@pytest.mark.postgres
async def test_consumer_lag_on_the_postgres_event_stream(pg_pool: Any, pg_schema: str) -> None:
    store = PostgresRecordStore(pg_pool, schema=pg_schema)
    service = OpsService(store, workflows=[build(store)])
    assert (await service.lag()).note.startswith("no consumer reads")
    s = sql.Identifier(pg_schema)
    async with pg_pool.connection() as conn:
        for topic in ("orders-2", "orders-2", "orders-2", "refunds-7"):
            await conn.execute(
                sql.SQL(
                    "SELECT {}.send_events(%s, ARRAY['f'], ARRAY[2::bigint], ARRAY['{{}}'::jsonb],"
                    " now())"
                ).format(s),
                [topic],
            )
        cur = await conn.execute(
            sql.SQL("SELECT id, stored_at FROM {}.events ORDER BY id").format(s)
        )
        (first, first_at), _, _, (refund, _) = await cur.fetchall()
        # "payments" handled the first event and holds it unacked; two wait after it.
        # "audit" has acked everything of orders-2; "refunds" is caught up too.
        await conn.execute(
            sql.SQL(
                "INSERT INTO {}.cursors (topic, name, position) VALUES"
                " ('orders-2', 'payments', %s), ('orders-2', 'zz-audit', %s),"
                " ('refunds-7', 'refunds', %s)"
            ).format(s),
            [first, first + 2, refund],
        )
        await conn.execute(
            sql.SQL(
                "INSERT INTO {}.claims (topic, name, event_id, owner, lease_until)"
                " VALUES ('orders-2', 'payments', %s, 'x', now())"
            ).format(s),
            [first],
        )
    view = await service.lag()
    assert view.available and view.note == ""
    payments, audit, refunds = view.consumers
    assert (payments.topic, payments.consumer, payments.workflow_name, payments.status_name) == (
        "orders-2",
        "payments",
        "orders",
        "AWAITING_PAYMENT",
    )
    assert (payments.waiting, payments.waiting_capped, payments.claimed) == (2, False, 1)
    assert payments.oldest_unacked == first_at
    assert (audit.waiting, audit.claimed, audit.oldest_unacked) == (0, 0, None)
    # A topic of a workflow not loaded: named from the topic itself.
    assert (refunds.workflow_name, refunds.status_name, refunds.waiting) == ("refunds", "7", 0)


async def test_consumer_lag_of_a_shard_counts_its_own_events(pg_pool: Any, pg_schema: str) -> None:
    """A step shard's receiver name waits only for the events of its shard."""
    store = PostgresRecordStore(pg_pool, schema=pg_schema)
    service = OpsService(store, workflows=[build(store)])
    s = sql.Identifier(pg_schema)
    async with pg_pool.connection() as conn:
        send = sql.SQL(
            "SELECT {}.send_events('orders-2', ARRAY['a','b','c','d','e','f'],"
            " ARRAY[2,2,2,2,2,2]::bigint[], ARRAY['{{}}','{{}}','{{}}','{{}}','{{}}','{{}}']"
            "::jsonb[], now())"
        ).format(s)
        await conn.execute(send)
        cur = await conn.execute(sql.SQL("SELECT id FROM {}.events ORDER BY id").format(s))
        ids = [row[0] for row in await cur.fetchall()]
        await conn.execute(
            sql.SQL(
                "INSERT INTO {}.cursors (topic, name, position, shard, shards) VALUES"
                " ('orders-2', 'one-of-two', 0, 1, 2), ('orders-2', 'every', 0, 1, 1)"
            ).format(s)
        )
    every, one = (await service.lag()).consumers
    assert (every.consumer, every.waiting) == ("every", 6)
    assert (one.consumer, one.waiting) == ("one-of-two", len([i for i in ids if i % 2 == 0]))
