"""Scheduled triggers: one per cron tick, cluster-wide."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from croniter import croniter

from .._filter import OrderType, filter_by_foreign_id
from .._naming import make_role
from ..errors import WorkflowInProgress
from ._loop import ProcessSpec, Progress, ensure_not_cancelled

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["MARK", "make_schedule", "parse_tick"]

MARK = "luno_wf schedule "
"""Prefix of ``meta.trace_origin`` of scheduled runs: ``luno_wf schedule <spec> tick=<iso>``."""

# How many of the foreign id's newest runs to search for the last scheduled one: manual
# triggers in between are passed over.
_SEARCH = 100


def parse_tick(trace_origin: str, spec: str) -> datetime | None:
    """The tick a run was scheduled for, if ``spec`` scheduled it."""
    prefix = f"{MARK}{spec} tick="
    if not trace_origin.startswith(prefix):
        return None
    try:
        return datetime.fromisoformat(trace_origin[len(prefix) :])
    except ValueError:
        return None


def make_schedule(
    wf: Workflow[Any, Any],
    foreign_id: str,
    spec: str,
    *,
    initial_value: Any,
    filter: Callable[[], Awaitable[bool]] | None,
    timezone: tzinfo,
) -> ProcessSpec:
    """The process that triggers ``foreign_id`` on every tick of ``spec``.

    The last tick fired is read back from the newest run the schedule made (its
    ``trace_origin``), each time the role is taken: so after a restart, or on another
    machine, the schedule carries on from the last tick that fired, never firing one twice.
    Manual triggers do not move the schedule. After downtime at most one missed tick fires
    (the latest), as in luno.
    """
    role = make_role(wf.name, foreign_id, "scheduler", spec)
    name = make_role(foreign_id, "scheduler", spec)

    async def last_tick() -> datetime | None:
        runs = await wf.store.list(
            wf.name,
            limit=_SEARCH,
            order=OrderType.DESCENDING,
            filters=[filter_by_foreign_id(foreign_id)],
        )
        for record in runs:
            tick = parse_tick(record.meta.trace_origin, spec)
            if tick is not None:
                return tick
        return None

    async def body(progress: Progress) -> None:
        base = await last_tick() or wf.clock.now()
        while True:
            ensure_not_cancelled()
            it = croniter(spec, base.astimezone(timezone))
            tick: datetime = it.get_next(datetime)
            now = wf.clock.now()
            # Skip to the latest tick already due: one catch-up fire after downtime.
            while True:
                following: datetime = it.get_next(datetime)
                if following > now:
                    break
                tick = following
            await wf.clock.sleep_until(tick)
            if filter is None or await filter():
                try:
                    await wf.trigger_scheduled(
                        foreign_id, initial_value, f"{MARK}{spec} tick={tick.isoformat()}"
                    )
                except WorkflowInProgress:
                    wf.debug_log("schedule: run still in progress, tick skipped", tick=tick)
            base = tick
            progress()
            await asyncio.sleep(0)

    return ProcessSpec(wf, name, role, body, wf.defaults.err_backoff, counted=False)
