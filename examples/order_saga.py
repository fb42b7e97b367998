"""Order saga: reserve stock, charge the card, ship, and undo it all when shipping fails.

Each step that changes the world outside has a compensation that undoes it: releasing the
reserved stock, refunding the charge. Shipping fails, so the engine pauses the run (the
error is kept in its history); an operator then compensates it: the refund and the release
run newest first, and the run ends cancelled. The run's history and its inspection report
show every write and who made it: ``python examples/order_saga.py``.
"""

from __future__ import annotations

import asyncio
import enum

import attrs

from luno_wf import Builder, Run, RunState, TypedRecord, Workflow
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer


class OrderStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    STOCK_RESERVED = 2
    CHARGED = 3
    SHIPPED = 4


@attrs.define
class Order:
    id: str
    items: list[str] = attrs.field(factory=list)
    amount: int = 0
    reservation: str = ""
    payment: str = ""
    refund: str = ""


class CourierUnavailable(Exception):
    pass


ledger: list[str] = []  # what the outside world saw, in order
paused: asyncio.Queue[TypedRecord[Order, OrderStatus]] = asyncio.Queue()
cancelled: asyncio.Queue[TypedRecord[Order, OrderStatus]] = asyncio.Queue()


async def reserve_stock(r: Run[Order, OrderStatus]) -> OrderStatus:
    r.object.reservation = f"RES-{r.object.id}"
    ledger.append(f"reserved {', '.join(r.object.items)} as {r.object.reservation}")
    return OrderStatus.STOCK_RESERVED


async def charge(r: Run[Order, OrderStatus]) -> OrderStatus:
    r.object.payment = f"PAY-{r.object.id}"
    ledger.append(f"charged {r.object.amount} EUR as {r.object.payment}")
    return OrderStatus.CHARGED


async def ship(r: Run[Order, OrderStatus]) -> OrderStatus:
    raise CourierUnavailable(f"no courier will take {r.object.id} today")


async def release_stock(r: Run[Order, OrderStatus]) -> None:
    ledger.append(f"released {r.object.reservation}")
    r.object.reservation = ""


async def refund(r: Run[Order, OrderStatus]) -> None:
    r.object.refund = f"REF-{r.object.payment}"
    ledger.append(f"refunded {r.object.payment} as {r.object.refund}")


async def alert_operator(r: TypedRecord[Order, OrderStatus]) -> None:
    await paused.put(r)


async def tell_customer(r: TypedRecord[Order, OrderStatus]) -> None:
    await cancelled.put(r)


def build() -> Workflow[Order, OrderStatus]:
    b = Builder("order saga", Order, OrderStatus)
    b.add_step(OrderStatus.CREATED, reserve_stock, OrderStatus.STOCK_RESERVED)
    b.add_step(OrderStatus.STOCK_RESERVED, charge, OrderStatus.CHARGED)
    # One failure pauses the run (the paused-run retry would try again after an hour).
    b.add_step(OrderStatus.CHARGED, ship, OrderStatus.SHIPPED, pause_after_err_count=1)
    b.add_compensation(OrderStatus.STOCK_RESERVED, release_stock)
    b.add_compensation(OrderStatus.CHARGED, refund)
    b.on_pause(alert_operator)
    b.on_cancel(tell_customer)
    return b.build(MemStreamer(), MemRecordStore(), MemRoleScheduler())


async def main() -> tuple[RunState, list[str], list[str]]:
    wf = build()
    async with wf:
        order = Order(id="order-7", items=["kettle", "mug"], amount=45)
        run_id = await wf.trigger("order-7", initial_value=order)

        stuck = await asyncio.wait_for(paused.get(), timeout=5)
        print(f"paused at {stuck.status.name}: {stuck.meta.error}")
        await wf.compensate(run_id, "could not ship", actor="operator:alice")
        done = await asyncio.wait_for(cancelled.get(), timeout=5)
        print(f"cancelled: {done.meta.run_state_reason}; refund {done.object.refund}")

        history = await wf.history(run_id)
        report = await wf.inspect(run_id)
    for line in ledger:
        print(f"ledger: {line}")
    print(report)
    return done.run_state, list(ledger), [t.actor for t in history]


if __name__ == "__main__":
    asyncio.run(main())
