"""Connector consumers: external events turned into workflow calls."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._builder import ConnectorSpec
from .._metrics import SkipReason
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
    lands in exactly one shard (luno's signed hash drops about a quarter of them). Metrics
    are luno's consume loop's: lag and lag alert per event, filtered events, and the
    duration of each connector function call that succeeded.
    """
    opts = wf.resolve(spec.options)
    total = max(opts.parallel_count, 1)
    out = []
    for shard in range(1, total + 1):
        role = make_role(
            spec.name, "connector-to", wf.name, "consumer", str(shard), "of", str(total)
        )

        async def body(progress: Progress, role: str = role, shard: int = shard) -> None:
            probe = wf.process_metrics(role)
            picked_up = None if probe is None else probe.lag_recorder(wf.clock, opts.lag_alert)
            consumer = await spec.constructor.make(role)
            try:
                while True:
                    event, ack = await consumer.recv()
                    if opts.lag:
                        await wf.clock.sleep_until(event.created_at + opts.lag)
                    if picked_up is not None:
                        picked_up(event.created_at)
                    if total > 1 and fnv1_64(event.id) % total != shard - 1:
                        await ack()
                        if probe is not None:
                            probe.skip(SkipReason.FILTERED_OUT)
                        continue
                    start = time.perf_counter()
                    await spec.fn(wf, event)
                    took = time.perf_counter() - start
                    await ack()
                    if probe is not None:
                        probe.observe(took)
                    progress()
            finally:
                await consumer.close()

        out.append(ProcessSpec(wf, role, role, body, opts.err_backoff))
    return out
