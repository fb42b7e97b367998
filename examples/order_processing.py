"""Order processing: a step, a payment callback, a 30-minute payment timeout and hooks.

An order is created, stock is reserved (a step), then it waits for the payment provider's
confirmation (a callback). Unpaid orders are cancelled after 30 minutes (a timeout).
Hooks tell the customer what happened. The clock is a FakeClock, so the 30 minutes pass at
once: ``python examples/order_processing.py``.
"""

from __future__ import annotations

import asyncio
import enum
import json
from datetime import UTC, datetime, timedelta

import attrs

from luno_wf import Builder, Run, RunState, TypedRecord, Workflow, duration_timer
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer, MemTimeoutStore
from luno_wf.testing import FakeClock, await_timeout_insert


class OrderStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    AWAITING_PAYMENT = 2
    PAID = 3
    SHIPPED = 4


@attrs.define
class Order:
    id: str
    items: list[str] = attrs.field(factory=list)
    payment_ref: str = ""
    tracking: str = ""


notifications: asyncio.Queue[str] = asyncio.Queue()


async def reserve_stock(r: Run[Order, OrderStatus]) -> OrderStatus:
    print(f"  reserve stock for {r.object.id}: {', '.join(r.object.items)}")
    return OrderStatus.AWAITING_PAYMENT


async def payment_confirmed(r: Run[Order, OrderStatus], payload: bytes) -> OrderStatus:
    r.object.payment_ref = json.loads(payload)["reference"]
    print(f"  payment {r.object.payment_ref} confirmed for {r.object.id}")
    return OrderStatus.PAID


async def cancel_unpaid(r: Run[Order, OrderStatus], now: datetime) -> OrderStatus:
    print(f"  {r.object.id} unpaid after 30 minutes: cancelling")
    return await r.cancel("payment not received within 30 minutes")


async def ship(r: Run[Order, OrderStatus]) -> OrderStatus:
    r.object.tracking = f"TRACK-{r.object.id}"
    print(f"  shipped {r.object.id} as {r.object.tracking}")
    return OrderStatus.SHIPPED


async def tell_customer_shipped(r: TypedRecord[Order, OrderStatus]) -> None:
    await notifications.put(f"{r.object.id}: on its way ({r.object.tracking})")


async def tell_customer_cancelled(r: TypedRecord[Order, OrderStatus]) -> None:
    await notifications.put(f"{r.object.id}: cancelled ({r.meta.run_state_reason})")


def build(clock: FakeClock) -> Workflow[Order, OrderStatus]:
    b = Builder("order processing", Order, OrderStatus)
    b.add_step(OrderStatus.CREATED, reserve_stock, OrderStatus.AWAITING_PAYMENT)
    b.add_callback(OrderStatus.AWAITING_PAYMENT, payment_confirmed, OrderStatus.PAID)
    b.add_timeout(
        OrderStatus.AWAITING_PAYMENT,
        duration_timer(timedelta(minutes=30)),
        cancel_unpaid,
        OrderStatus.PAID,  # a timeout declares destinations like a step; this one cancels
        polling_frequency=timedelta(milliseconds=50),
    )
    b.add_step(OrderStatus.PAID, ship, OrderStatus.SHIPPED)
    b.on_complete(tell_customer_shipped)
    b.on_cancel(tell_customer_cancelled)
    return b.build(
        MemStreamer(clock=clock),
        MemRecordStore(clock=clock),
        MemRoleScheduler(),
        timeout_store=MemTimeoutStore(clock=clock),
        clock=clock,
    )


async def main() -> tuple[dict[str, RunState], list[str]]:
    clock = FakeClock(datetime(2025, 3, 1, 9, 0, tzinfo=UTC))
    wf = build(clock)
    async with wf:
        paid = await wf.trigger("order-1", initial_value=Order(id="order-1", items=["book"]))
        unpaid = await wf.trigger("order-2", initial_value=Order(id="order-2", items=["lamp"]))
        await wf.await_status("order-1", paid, OrderStatus.AWAITING_PAYMENT)
        await wf.callback("order-1", OrderStatus.AWAITING_PAYMENT, b'{"reference": "PAY-42"}')
        await wf.await_status("order-1", paid, OrderStatus.SHIPPED)

        await await_timeout_insert(wf, "order-2", unpaid, OrderStatus.AWAITING_PAYMENT)
        clock.advance(timedelta(minutes=30))
        sent = [await asyncio.wait_for(notifications.get(), timeout=5) for _ in range(2)]

        result = {
            "order-1": (await wf.lookup(paid)).run_state,
            "order-2": (await wf.lookup(unpaid)).run_state,
        }
    for line in sent:
        print(f"notify {line}")
    return result, sent


if __name__ == "__main__":
    asyncio.run(main())
