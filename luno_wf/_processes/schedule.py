"""Scheduled triggers: one per cron tick, cluster-wide."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Any

from croniter import croniter

from .._engine import Engine
from .._filter import OrderType, filter_by_foreign_id
from .._naming import make_role
from .._trigger import start_run
from ..errors import WorkflowInProgress
from ._process import LiveProcess, Progress, ensure_not_cancelled

__all__ = ["MARK", "Schedule", "parse_tick"]

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


class Schedule:
    """Triggers ``foreign_id`` on every tick of the cron expression ``spec``.

    The last tick fired is read back from the newest run the schedule made (its
    ``trace_origin``), each time the role is taken: so after a restart, or on another
    machine, the schedule carries on from the last tick that fired, never firing one twice.
    Manual triggers do not move the schedule. After downtime at most one missed tick fires
    (the latest), as in luno.
    """

    def __init__(
        self,
        engine: Engine[Any, Any],
        foreign_id: str,
        spec: str,
        *,
        initial_value: Any,
        filter: Callable[[], Awaitable[bool]] | None,
        timezone: tzinfo,
    ) -> None:
        self.name = make_role(foreign_id, "scheduler", spec)
        self.role = make_role(engine.name, foreign_id, "scheduler", spec)
        self._engine = engine
        self._foreign_id = foreign_id
        self._spec = spec
        self._initial_value = initial_value
        self._filter = filter
        self._timezone = timezone
        self._actor = f"schedule:{spec}"

    def process(self) -> LiveProcess:
        """The schedule as a live process (not part of ``run()``'s readiness)."""
        backoff = self._engine.defaults.err_backoff
        return LiveProcess(self._engine, self.name, self.role, self.run, backoff, counted=False)

    async def last_tick(self) -> datetime | None:
        """The tick of the newest run this schedule made, if any."""
        engine = self._engine
        runs = await engine.store.list(
            engine.name,
            limit=_SEARCH,
            order=OrderType.DESCENDING,
            filters=[filter_by_foreign_id(self._foreign_id)],
        )
        for record in runs:
            tick = parse_tick(record.meta.trace_origin, self._spec)
            if tick is not None:
                return tick
        return None

    def next_tick(self, base: datetime, now: datetime) -> datetime:
        """The tick after ``base``, or the latest one already due at ``now`` (catch-up)."""
        it = croniter(self._spec, base.astimezone(self._timezone))
        tick: datetime = it.get_next(datetime)
        while True:
            following: datetime = it.get_next(datetime)
            if following > now:
                return tick
            tick = following

    async def fire(self, tick: datetime) -> None:
        """Trigger the run of ``tick``, unless the filter says no or a run is unfinished."""
        if self._filter is not None and not await self._filter():
            return
        engine = self._engine
        definition = engine.definition
        value = definition.object_type() if self._initial_value is None else self._initial_value
        origin = f"{MARK}{self._spec} tick={tick.isoformat()}"
        try:
            await start_run(
                engine, self._foreign_id, definition.default_start, value, origin, self._actor
            )
        except WorkflowInProgress:
            engine.debug_log("schedule: run still in progress, tick skipped", tick=tick)

    async def run(self, progress: Progress) -> None:
        """Fire every tick until cancelled."""
        clock = self._engine.clock
        activity = self._engine.states.activity(self.name)
        base = await self.last_tick() or clock.now()
        while not activity.draining:
            ensure_not_cancelled()
            tick = self.next_tick(base, clock.now())
            activity.waiting = True
            await clock.sleep_until(tick)
            activity.waiting = False
            await self.fire(tick)
            base = tick
            progress()
            await asyncio.sleep(0)
