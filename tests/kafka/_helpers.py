"""Small helpers shared by the Kafka tests."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, TypeVar

from luno_wf import Ack

T_co = TypeVar("T_co", covariant=True)


class Receiving(Protocol[T_co]):
    async def recv(self) -> tuple[T_co, Ack]: ...


async def recv(receiver: Receiving[T_co], within: float = 15.0) -> tuple[T_co, Ack]:
    """Receive one item or fail the test after ``within`` seconds."""
    async with asyncio.timeout(within):
        return await receiver.recv()


async def recv_all(receiver: Receiving[T_co], count: int, *, ack: bool = True) -> list[T_co]:
    """Receive ``count`` items (acking each unless told not to)."""
    items = []
    for _ in range(count):
        item, acknowledge = await recv(receiver)
        if ack:
            await acknowledge()
        items.append(item)
    return items


async def nothing_within(receiver: Receiving[Any], seconds: float) -> bool:
    """Whether nothing arrives for ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await receiver.recv()
    except TimeoutError:
        return True
    return False
