"""Ready-made timer functions for :meth:`luno_wf.Builder.add_timeout`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

__all__ = ["duration_timer", "time_timer"]


def duration_timer(duration: timedelta) -> Callable[[Any, datetime], Awaitable[datetime]]:
    """A timer that fires ``duration`` after the run enters the status."""
    if not isinstance(duration, timedelta) or duration < timedelta(0):
        raise ValueError(f"duration_timer needs a non-negative timedelta, got {duration!r}")

    async def timer(run: Any, now: datetime) -> datetime:
        return now + duration

    return timer


def time_timer(moment: datetime) -> Callable[[Any, datetime], Awaitable[datetime]]:
    """A timer that fires at ``moment`` (aware), whenever the run enters the status."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"time_timer needs an aware datetime, got {moment!r}")

    async def timer(run: Any, now: datetime) -> datetime:
        return moment

    return timer
