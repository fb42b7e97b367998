"""Connector consumers: external events turned into workflow calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._builder import ConnectorSpec
from .._naming import make_role
from ._loop import ProcessSpec, Progress

if TYPE_CHECKING:
    from .._workflow import Workflow

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


def processes(wf: Workflow[Any, Any], spec: ConnectorSpec) -> list[ProcessSpec]:
    """The consumers of one connector, one per shard.

    Shards split events by the unsigned FNV-1 hash of the connector event id, so every event
    lands in exactly one shard (luno's signed hash drops about a quarter of them).
    """
    opts = wf.resolve(spec.options)
    total = max(opts.parallel_count, 1)
    out = []
    for shard in range(1, total + 1):
        role = make_role(
            spec.name, "connector-to", wf.name, "consumer", str(shard), "of", str(total)
        )

        async def body(progress: Progress, role: str = role, shard: int = shard) -> None:
            consumer = await spec.constructor.make(role)
            try:
                while True:
                    event, ack = await consumer.recv()
                    if opts.lag:
                        await wf.clock.sleep_until(event.created_at + opts.lag)
                    if total > 1 and fnv1_64(event.id) % total != shard - 1:
                        await ack()
                        continue
                    await spec.fn(wf, event)
                    await ack()
                    progress()
            finally:
                await consumer.close()

        out.append(ProcessSpec(wf, role, role, body, opts.err_backoff))
    return out
