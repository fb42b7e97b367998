"""Timeouts: an auto-inserter and a poller per status that has timeouts."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from .._actor import process_actor
from .._definition import TimeoutSpec
from .._engine import Engine
from .._event import Event
from .._metrics import SkipReason
from .._naming import make_role, topic
from .._options import Resolved, backoff_delay
from .._record import Record
from .._run import RUN_STATE_UPDATED, SKIP, Run
from .._timeoutrecord import TimeoutRecord
from .._tracing import Work
from ..adapter import TimeoutStore
from ..errors import CorruptRecord, InvalidTransition, RecordNotFound, StaleRecord
from ._consumer import consumer_process, handling, intake_of
from ._load import EventLoader
from ._pausing import Failures
from ._process import LiveProcess, Progress, ensure_not_cancelled
from ._update import apply_result
from ._wait import poll_wait

__all__ = ["TimeoutInserter", "TimeoutPoller", "poller_names", "processes"]


def poller_names(engine: Engine[Any, Any], status: int) -> tuple[str, str]:
    """The process name and the role of the poller firing the timeouts of ``status``."""
    name = make_role(engine.definition.status_name(status), "timeout-consumer")
    return name, make_role(engine.name, str(status), "timeout-consumer")


def processes(engine: Engine[Any, Any], status: int) -> list[LiveProcess]:
    """The inserter and the poller of one status's timeouts."""
    store = engine.timeout_store
    assert store is not None
    opts = engine.resolve(engine.definition.timeout_opts(status))
    specs = engine.definition.timeouts[status]
    label = engine.definition.status_name(status)
    name = make_role(label, "timeout-auto-inserter-consumer")
    inserter = TimeoutInserter(engine, store, status, specs, name, opts)
    poller = TimeoutPoller(engine, store, status, specs, opts)
    return [
        consumer_process(
            engine,
            name=name,
            role=make_role(engine.name, str(status), "timeout-auto-inserter-consumer"),
            topic=topic(engine.name, status),
            polling=opts.polling_frequency,
            backoff=opts.err_backoff,
            session=handling(
                inserter,
                intake_of(engine, name, topic=topic(engine.name, status), lag_alert=opts.lag_alert),
            ),
        ),
        LiveProcess(
            engine,
            poller.name,
            poller_names(engine, status)[1],
            poller.run,
            opts.err_backoff,
        ),
    ]


def _check_expiry(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TypeError(f"{where} must return an aware datetime or None, got {value!r}")
    return value


class TimeoutInserter:
    """Handles each event of a run entering the status: asks its timers, stores timeouts."""

    def __init__(
        self,
        engine: Engine[Any, Any],
        store: TimeoutStore,
        status: int,
        specs: tuple[TimeoutSpec, ...],
        name: str,
        opts: Resolved,
    ) -> None:
        self._engine = engine
        self._store = store
        self._status = status
        self._specs = specs
        self._label = engine.definition.status_name(status)
        self._loader = EventLoader(engine, status, name)
        self._failures = Failures(
            engine, name, opts.pause_after_err_count, process_actor("timeout", self._label)
        )

    async def __call__(self, event: Event) -> None:
        record = await self._loader.load(event)
        if record is None:
            return
        with self._engine.tracing.span(Work.TIMER, record, headers=event.headers):
            run = await self._failures.decode(record)
            if run is not None:
                await self.insert(record, run)

    async def insert(self, record: Record, run: Run[Any, Any]) -> None:
        """Ask each timer of the status when the run times out; store those that say."""
        now = self._engine.clock.now()
        for spec in self._specs:
            try:
                where = f"timer {spec.index} of {self._label}"
                expire_at = _check_expiry(await spec.timer(run, now), where)
            except Exception as err:
                if await self._failures.pause_if_due(record, err):
                    return
                raise
            if expire_at is None:
                continue
            await self._store.create(
                self._engine.name,
                record.foreign_id,
                record.run_id,
                self._status,
                expire_at,
                timer=spec.index,
                version=record.meta.version,
            )
        self._failures.clear(record.run_id)


class TimeoutPoller:
    """Fires the due timeouts of one status, polling the timeout store.

    A timeout whose run moved on (another status, finished, gone) is cancelled; one of a
    paused run waits until the run is resumed. A failing timeout function is backed off per
    row (other rows keep firing) and counted towards pausing its run.
    """

    def __init__(
        self,
        engine: Engine[Any, Any],
        store: TimeoutStore,
        status: int,
        specs: tuple[TimeoutSpec, ...],
        opts: Resolved,
    ) -> None:
        self.name = poller_names(engine, status)[0]
        self._engine = engine
        self._store = store
        self._status = status
        self._specs = specs
        self._opts = opts
        self._failures = Failures(
            engine,
            self.name,
            opts.pause_after_err_count,
            process_actor("timeout", engine.definition.status_name(status)),
        )
        self._probe = engine.probe(self.name)
        # Per-row back-off after a timeout-function error: (consecutive errors, monotonic
        # time before which the row is not retried).
        self._backoff: dict[int, tuple[int, float]] = {}

    async def run(self, progress: Progress) -> None:
        """Poll until cancelled."""
        engine = self._engine
        activity = engine.states.activity(self.name)
        while not activity.draining:
            ensure_not_cancelled()
            await self.poll_once(engine.clock.now())
            progress()
            activity.waiting = True
            await poll_wait(engine.clock, self._opts.polling_frequency)
            activity.waiting = False

    async def poll_once(self, now: datetime) -> None:
        """Fire every timeout due at ``now`` that is not backed off."""
        rows = await self._store.list_valid(self._engine.name, self._status, now)
        moment = time.monotonic()
        for row in rows:
            held = self._backoff.get(row.id)
            if held is not None and held[1] > moment:
                continue
            await self.fire(row, now)

    async def current_run(self, row: TimeoutRecord) -> tuple[Record, Run[Any, Any]] | None:
        """The run ``row`` may fire for, None if it no longer applies (then cancelled)."""
        try:
            record = await self._engine.store.lookup(row.run_id)
        except RecordNotFound:
            await self._store.cancel(row.id)
            return None
        except CorruptRecord as err:
            # Not this row's fault, and not for other rows to wait on: retried, backed off.
            self._hold(row, err)
            return None
        if (
            record.workflow_name != self._engine.name
            or record.status != row.status
            or record.run_state.finished()
            or row.timer >= len(self._specs)
        ):
            await self._store.cancel(row.id)  # the run moved on: this timeout no longer applies
            return None
        if record.run_state.stopped():
            return None  # paused: the timeout fires once the run is resumed
        run = await self._failures.decode(record)
        return None if run is None else (record, run)

    async def fire(self, row: TimeoutRecord, now: datetime) -> None:
        """Run the timeout function of ``row`` and store what it returned (in its span)."""
        found = await self.current_run(row)
        if found is None:
            return
        record, run = found
        with self._engine.tracing.span(Work.TIMEOUT, record):
            await self.call(row, record, run, now)

    async def call(
        self, row: TimeoutRecord, record: Record, run: Run[Any, Any], now: datetime
    ) -> None:
        """Call the timeout function of ``row`` on ``run``; store or count what came of it."""
        start = time.perf_counter()
        try:
            result = await self._specs[row.timer].fn(run, now)
        except Exception as err:
            self._probe.observe(time.perf_counter() - start)
            await self.failed(row, record, err)
            return
        self._probe.observe(time.perf_counter() - start)
        self._backoff.pop(row.id, None)
        self._failures.clear(record.run_id)
        if result is SKIP or result is RUN_STATE_UPDATED:
            await self._store.complete(row.id)  # done with: a skipped timeout is not re-fired
            self._probe.skip(SkipReason.NEXT_VALUE_SPECIFIED_SKIP)
            return
        try:
            await apply_result(self._engine, self._status, result, run, self._failures.actor)
        except StaleRecord:
            return  # written meanwhile; the next poll re-checks this row
        except InvalidTransition as err:
            self._engine.logger.error("%s", err)
            if await self._failures.pause_if_due(record, err, permanent=True):
                return
            raise
        await self._store.complete(row.id)

    async def failed(self, row: TimeoutRecord, record: Record, err: Exception) -> None:
        """Count a timeout function's error: pause the run, or back the row off."""
        if await self._failures.pause_if_due(record, err):
            self._backoff.pop(row.id, None)
            return
        self._hold(row, err)

    def _hold(self, row: TimeoutRecord, err: Exception) -> None:
        """Back ``row`` off after an error, and log it; other rows keep firing."""
        # Backed off here, per row, where a step's error restarts its process: counted as
        # that restart would be.
        self._probe.errors += 1
        attempts = self._backoff.get(row.id, (0, 0.0))[0] + 1
        delay = backoff_delay(self._opts.err_backoff, attempts)
        self._backoff[row.id] = (attempts, time.monotonic() + delay)
        self._engine.logger.error(
            "timeout error [process=%s] run %s: %s: %s",
            self.name,
            row.run_id,
            type(err).__name__,
            err,
            exc_info=err,
        )
