"""Connector consumers: external events turned into workflow calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._actor import CONNECTOR
from .._api import API
from .._definition import ConnectorSpec
from .._engine import Engine
from .._event import ConnectorEvent
from .._naming import make_role
from ._consumer import intake_of
from ._loop import consume
from ._process import LiveProcess, Progress

__all__ = ["fnv1_64", "processes"]

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


def fnv1_64(text: str) -> int:
    """FNV-1 (not 1a) 64-bit hash of ``text``, unsigned (luno's connector event id hash)."""
    value = _FNV_OFFSET
    for byte in text.encode():
        value = (value * _FNV_PRIME) & _MASK
        value ^= byte
    return value


def connector_keeps(shard: int, total: int) -> Callable[[ConnectorEvent], bool]:
    """A filter keeping the connector events of shard ``shard`` (1-based) of ``total``."""

    def keep(event: ConnectorEvent) -> bool:
        return fnv1_64(event.id) % total == shard - 1

    return keep


def processes(
    engine: Engine[Any, Any], spec: ConnectorSpec, api: API[Any, Any]
) -> list[LiveProcess]:
    """The consumers of one connector, one per shard; ``api`` is what its function gets.

    Shards split events by the unsigned FNV-1 hash of the connector event id, so every event
    lands in exactly one shard (luno's signed hash drops about a quarter of them). They run
    the shared consume loop, so metrics are luno's: lag and lag alert per event, filtered
    events, and the duration of each connector function call that succeeded. The API calls
    the function makes name ``"connector:<name>"`` as their actor unless they pass one.
    """
    opts = engine.resolve(spec.options)
    total = max(opts.parallel_count, 1)
    actor = f"connector:{spec.name}"
    out = []
    for shard in range(1, total + 1):
        role = make_role(
            spec.name, "connector-to", engine.name, "consumer", str(shard), "of", str(total)
        )
        intake = intake_of(
            engine,
            role,
            topic=spec.name,
            lag=opts.lag,
            lag_alert=opts.lag_alert,
            keep=connector_keeps(shard, total) if total > 1 else None,
        )

        async def body(progress: Progress, role: str = role, intake: Any = intake) -> None:
            consumer = await spec.constructor.make(role)

            async def handle(event: ConnectorEvent) -> None:
                token = CONNECTOR.set(actor)  # API calls of the function name the connector
                try:
                    with engine.tracing.connector(spec.name, event):
                        await spec.fn(api, event)
                finally:
                    CONNECTOR.reset(token)

            try:
                await consume(consumer, handle, intake, progress)
            finally:
                await consumer.close()

        out.append(LiveProcess(engine, role, role, body, opts.err_backoff))
    return out
