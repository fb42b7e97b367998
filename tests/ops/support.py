"""A small order workflow and helpers to put runs in a store, for the operator surface's tests."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from luno_wf import Builder, Meta, Record, RecordStore, Run, RunState, Workflow
from luno_wf.memory import MemRoleScheduler, MemStreamer
from luno_wf.testing import FakeClock

WORKFLOW = "orders"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class OrderStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    AWAITING_PAYMENT = 2
    PAID = 3
    SHIPPED = 4


@attrs.define
class Order:
    id: str = ""
    amount: int = 0


async def reserve(r: Run[Order, OrderStatus]) -> OrderStatus:
    return OrderStatus.AWAITING_PAYMENT


async def paid(r: Run[Order, OrderStatus], payload: bytes) -> OrderStatus:
    return OrderStatus.PAID


async def ship(r: Run[Order, OrderStatus]) -> OrderStatus:
    return OrderStatus.SHIPPED


def build(store: RecordStore) -> Workflow[Order, OrderStatus]:
    """The orders workflow on ``store`` (in-memory streamer and scheduler)."""
    b = Builder(WORKFLOW, Order, OrderStatus)
    b.add_step(OrderStatus.CREATED, reserve, OrderStatus.AWAITING_PAYMENT)
    b.add_callback(OrderStatus.AWAITING_PAYMENT, paid, OrderStatus.PAID)
    b.add_step(OrderStatus.PAID, ship, OrderStatus.SHIPPED)
    return b.build(MemStreamer(), store, MemRoleScheduler())


def record(
    foreign_id: str,
    status: OrderStatus = OrderStatus.AWAITING_PAYMENT,
    run_state: RunState = RunState.RUNNING,
    *,
    workflow: str = WORKFLOW,
    created_at: datetime = T0,
    updated_at: datetime | None = None,
    obj: Any = None,
    run_id: str | None = None,
) -> Record:
    """A run's record at version 1, as the engine would store it."""
    payload = obj if obj is not None else f'{{"id":"{foreign_id}","amount":100}}'.encode()
    return Record(
        workflow_name=workflow,
        foreign_id=foreign_id,
        run_id=run_id or str(uuid.uuid4()),
        run_state=run_state,
        status=int(status),
        object=payload,
        created_at=created_at,
        updated_at=updated_at or created_at,
        meta=Meta(status_description=status.name, version=1),
    )


async def put(store: RecordStore, *records: Record) -> list[Record]:
    """Store each record; return them."""
    for r in records:
        await store.store(r)
    return list(records)


async def seed(store: RecordStore, count: int = 6, prefix: str = "order") -> list[Record]:
    """``count`` runs, one minute apart: even ones awaiting payment, odd ones paused at PAID."""
    runs = []
    for i in range(count):
        paused = i % 2 == 1
        runs.append(
            record(
                f"{prefix}-{i}",
                OrderStatus.PAID if paused else OrderStatus.AWAITING_PAYMENT,
                RunState.PAUSED if paused else RunState.RUNNING,
                created_at=T0 + timedelta(minutes=i),
            )
        )
    return await put(store, *runs)


# -- a store with a realistic morning of orders, for the browser tests and the screenshots ----

SHOWCASE_NOW = datetime(2024, 5, 1, 15, 0, tzinfo=UTC)
"""When the showcase's operators look at it."""

_TRIGGERED = (OrderStatus.CREATED, RunState.INITIATED, "api", "", "")
_RESERVED = (OrderStatus.AWAITING_PAYMENT, RunState.RUNNING, "step:CREATED", "", "")
_PAID = (OrderStatus.PAID, RunState.RUNNING, "callback:AWAITING_PAYMENT", "", "")
_SHIPPED = (OrderStatus.SHIPPED, RunState.COMPLETED, "step:PAID", "", "")
_WAITING = [(0, _TRIGGERED), (0.02, _RESERVED)]
_DONE = [*_WAITING, (11, _PAID), (11.5, _SHIPPED)]

# (foreign id, minutes after 12:00 it was triggered, its writes as (minutes after its
# trigger, (status, run state, actor, reason, error)))
_SHOWCASE: list[tuple[str, float, list[tuple[float, tuple[Any, ...]]]]] = [
    ("order-1001", 0, _DONE),
    ("order-1002", 20, _DONE),
    (
        "order-1003",
        40,
        [
            *_WAITING,
            (
                30,
                (
                    OrderStatus.AWAITING_PAYMENT,
                    RunState.CANCELLED,
                    "operator:ann",
                    "customer cancelled by phone",
                    "",
                ),
            ),
        ],
    ),
    ("order-1004", 60, _DONE),
    (
        "order-1005",
        75,
        [
            *_WAITING,
            (10, _PAID),
            (11, (OrderStatus.PAID, RunState.PAUSED, "operator:bo", "card fraud check", "")),
        ],
    ),
    ("order-1006", 90, _WAITING),
    (
        "order-1007",
        110,
        [
            *_WAITING,
            (4, _PAID),
            (
                9,
                (
                    OrderStatus.PAID,
                    RunState.PAUSED,
                    "step:PAID",
                    "paused after 3 errors",
                    "CourierUnavailable: no courier today",
                ),
            ),
        ],
    ),
    ("order-1008", 125, _DONE),
    ("order-1009", 140, _WAITING),
    ("order-1010", 160, _WAITING),
    ("order-1011", 170, _WAITING),
    ("order-1012", 178, [(0, _TRIGGERED)]),
]


def showcase_run_id(foreign_id: str) -> str:
    """The showcase run's id: the same on every run of the tests (screenshots stay stable)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"luno-wf-showcase/{foreign_id}"))


async def showcase(store: RecordStore, clock: FakeClock) -> dict[str, Record]:
    """Twelve orders of a working day up to :data:`SHOWCASE_NOW`, each write in its history.

    ``store`` must stamp its outbox rows with ``clock``, which is moved to each write's
    time; the outbox publisher has caught up but for the last ten minutes.
    """
    writes: list[tuple[datetime, Record]] = []
    for foreign_id, start, steps in _SHOWCASE:
        created = T0 + timedelta(minutes=start)
        amount = 1000 + 37 * int(foreign_id[-2:])
        payload = f'{{"id":"{foreign_id}","amount":{amount}}}'.encode()
        for version, (after, (status, state, actor, reason, error)) in enumerate(steps, 1):
            at = created + timedelta(minutes=after)
            meta = Meta(
                status_description=status.name,
                version=version,
                run_state_reason=reason,
                actor=actor,
                error=error,
            )
            written = Record(
                workflow_name=WORKFLOW,
                foreign_id=foreign_id,
                run_id=showcase_run_id(foreign_id),
                run_state=state,
                status=int(status),
                object=payload,
                created_at=created,
                updated_at=at,
                meta=meta,
            )
            writes.append((at, written))
    latest: dict[str, Record] = {}
    for at, written in sorted(writes, key=lambda w: w[0]):
        clock.set(max(at, clock.now()))
        await store.store(written)
        latest[written.foreign_id] = written
    published = SHOWCASE_NOW - timedelta(minutes=10)
    for row in await store.list_outbox_events(WORKFLOW, 1000):
        if row.created_at < published:
            await store.delete_outbox_event(row.id)
    clock.set(SHOWCASE_NOW)
    return latest
