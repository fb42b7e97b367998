"""A small order workflow and helpers to put runs in a store, for the operator surface's tests."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from luno_wf import Builder, Meta, Record, RecordStore, Run, RunState, Workflow
from luno_wf.memory import MemRoleScheduler, MemStreamer

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
