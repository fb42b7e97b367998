"""Orders: created, awaiting payment, then paid and shipped, or expired after 30 minutes."""

from __future__ import annotations

import enum
import json
from datetime import datetime, timedelta

import attrs

from luno_wf import Builder, Run, TypedRecord, duration_timer


class OrderStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    AWAITING_PAYMENT = 2
    PAID = 3
    SHIPPED = 4
    EXPIRED = 5
    CHARGED = 6
    DECLINED = 7


@attrs.define
class Order:
    id: str
    amount: int = 0  # in cents
    email: str = ""
    payment_ref: str = ""
    charge_id: str = ""


class Payments:
    """A payment provider's client."""

    async def charge(self, amount: int) -> str:
        return f"charge-{amount}"


class Mailer:
    """Sends e-mails (here: keeps them)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, text: str) -> None:
        self.sent.append((to, text))


payments = Payments()
mailer = Mailer()


async def reserve_stock(r: Run[Order, OrderStatus]) -> OrderStatus:
    return OrderStatus.AWAITING_PAYMENT


async def payment_confirmed(r: Run[Order, OrderStatus], payload: bytes) -> OrderStatus:
    r.object.payment_ref = json.loads(payload)["reference"]
    return OrderStatus.PAID


async def expire(r: Run[Order, OrderStatus], now: datetime) -> OrderStatus:
    return OrderStatus.EXPIRED


async def ship(r: Run[Order, OrderStatus]) -> OrderStatus:
    return OrderStatus.SHIPPED


async def alert_support(r: TypedRecord[Order, OrderStatus]) -> None:
    await mailer.send("support@example.com", f"Order {r.object.id} paused")


async def refund(r: TypedRecord[Order, OrderStatus]) -> None:
    await mailer.send(r.object.email, f"Order {r.object.id} is cancelled and refunded")


def builder() -> Builder[Order, OrderStatus]:
    """The order workflow, ready to build on adapters."""
    b = Builder("orders", Order, OrderStatus)
    b.add_step(OrderStatus.CREATED, reserve_stock, OrderStatus.AWAITING_PAYMENT)
    b.add_callback(OrderStatus.AWAITING_PAYMENT, payment_confirmed, OrderStatus.PAID)
    b.add_timeout(
        OrderStatus.AWAITING_PAYMENT,
        duration_timer(timedelta(minutes=30)),
        expire,
        OrderStatus.EXPIRED,
    )
    b.add_step(OrderStatus.PAID, ship, OrderStatus.SHIPPED)
    return b
