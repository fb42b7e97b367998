"""Waiting for a poll interval on both the wall clock and the engine clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from .._clock import Clock, SystemClock

__all__ = ["poll_wait"]


async def poll_wait(clock: Clock, interval: timedelta) -> None:
    """Wait ``interval`` of wall time, or less if ``clock`` (a fake one) is advanced past it.

    Polling uses real time so that idle processes poll at a steady rate; a test clock that
    jumps forward wakes the pollers at once, so due timeouts fire with no real waiting.
    """
    seconds = interval.total_seconds()
    if isinstance(clock, SystemClock):
        await asyncio.sleep(seconds)
        return
    sleeper = asyncio.ensure_future(clock.sleep_until(clock.now() + interval))
    try:
        await asyncio.wait({sleeper}, timeout=seconds)
    finally:
        sleeper.cancel()
