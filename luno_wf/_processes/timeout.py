"""Timeouts: an auto-inserter and a poller per status that has timeouts."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._event import Event
from .._metrics import SkipReason
from .._naming import make_role, topic
from .._options import Options, backoff_delay
from .._run import RUN_STATE_UPDATED, SKIP
from .._timeoutrecord import TimeoutRecord
from ..errors import InvalidTransition, RecordNotFound, StaleRecord
from ._load import load_current
from ._loop import ProcessSpec, Progress, consumer_process, ensure_not_cancelled
from ._pausing import maybe_pause
from ._update import apply_result
from ._wait import poll_wait
from .step import DECODE_ERRORS

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["processes"]


def processes(wf: Workflow[Any, Any], status: int) -> list[ProcessSpec]:
    """The inserter and the poller of one status's timeouts."""
    return [_inserter(wf, status), _poller(wf, status)]


def _check_expiry(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TypeError(f"{where} must return an aware datetime or None, got {value!r}")
    return value


def _inserter(wf: Workflow[Any, Any], status: int) -> ProcessSpec:
    specs = wf.timeouts[status]
    opts = wf.resolve(wf.timeout_options.get(status, Options()))
    label = wf.status_type(status).name
    role = make_role(wf.name, str(status), "timeout-auto-inserter-consumer")
    name = make_role(label, "timeout-auto-inserter-consumer")
    store = wf.timeout_store
    assert store is not None
    probe = wf.process_metrics(name)

    async def handle(event: Event) -> None:
        record = await load_current(wf, event, status, probe=probe)
        if record is None:
            return
        try:
            run = wf.build_run(record)
        except DECODE_ERRORS as err:
            if await maybe_pause(wf, name, record, err, opts.pause_after_err_count, permanent=True):
                return
            raise
        now = wf.clock.now()
        for spec in specs:
            try:
                expire_at = _check_expiry(
                    await spec.timer(run, now), f"timer {spec.index} of {label}"
                )
            except Exception as err:
                if await maybe_pause(wf, name, record, err, opts.pause_after_err_count):
                    return
                raise
            if expire_at is None:
                continue
            await store.create(
                wf.name,
                record.foreign_id,
                record.run_id,
                status,
                expire_at,
                timer=spec.index,
                version=record.meta.version,
            )
        wf.clear_errors(name, record.run_id)

    return consumer_process(
        wf,
        name=name,
        role=role,
        topic=topic(wf.name, status),
        handle=handle,
        polling=opts.polling_frequency,
        backoff=opts.err_backoff,
        lag_alert=opts.lag_alert,
    )


def _poller(wf: Workflow[Any, Any], status: int) -> ProcessSpec:
    specs = wf.timeouts[status]
    opts = wf.resolve(wf.timeout_options.get(status, Options()))
    label = wf.status_type(status).name
    role = make_role(wf.name, str(status), "timeout-consumer")
    name = make_role(label, "timeout-consumer")
    store = wf.timeout_store
    assert store is not None
    # Per-row back-off after a timeout-function error: (consecutive errors, monotonic time
    # before which the row is not retried). Other rows keep firing meanwhile.
    backoff: dict[int, tuple[int, float]] = {}
    probe = wf.process_metrics(name)

    async def fire(row: TimeoutRecord, now: datetime) -> None:
        try:
            record = await wf.store.lookup(row.run_id)
        except RecordNotFound:
            await store.cancel(row.id)
            return
        if (
            record.workflow_name != wf.name
            or record.status != row.status
            or record.run_state.finished()
            or row.timer >= len(specs)
        ):
            await store.cancel(row.id)  # the run moved on: this timeout no longer applies
            return
        if record.run_state.stopped():
            return  # paused: the timeout fires once the run is resumed
        try:
            run = wf.build_run(record)
        except DECODE_ERRORS as err:
            if not await maybe_pause(
                wf, name, record, err, opts.pause_after_err_count, permanent=True
            ):
                raise
            return
        start = time.perf_counter()
        try:
            result = await specs[row.timer].fn(run, now)
        except Exception as err:
            if probe is not None:
                probe.observe(time.perf_counter() - start)
            if await maybe_pause(wf, name, record, err, opts.pause_after_err_count):
                backoff.pop(row.id, None)
                return
            if probe is not None:
                # Backed off here, per row, where a step's error restarts its process:
                # counted as that restart would be.
                probe.errors += 1
            attempts = backoff.get(row.id, (0, 0.0))[0] + 1
            backoff[row.id] = (
                attempts,
                time.monotonic() + backoff_delay(opts.err_backoff, attempts),
            )
            wf.logger.error(
                "timeout error [process=%s] run %s: %s: %s",
                name,
                record.run_id,
                type(err).__name__,
                err,
            )
            return
        if probe is not None:
            probe.observe(time.perf_counter() - start)
        backoff.pop(row.id, None)
        wf.clear_errors(name, record.run_id)
        if result is SKIP or result is RUN_STATE_UPDATED:
            await store.complete(row.id)  # done with: a skipped timeout is not re-fired
            if probe is not None:
                probe.skip(SkipReason.NEXT_VALUE_SPECIFIED_SKIP)
            return
        try:
            await apply_result(wf, status, result, run)
        except StaleRecord:
            return  # written meanwhile; the next poll re-checks this row
        except InvalidTransition as err:
            wf.logger.error("%s", err)
            if await maybe_pause(wf, name, record, err, opts.pause_after_err_count, permanent=True):
                return
            raise
        await store.complete(row.id)

    async def body(progress: Progress) -> None:
        while True:
            ensure_not_cancelled()
            now = wf.clock.now()
            rows = await store.list_valid(wf.name, status, now)
            moment = time.monotonic()
            for row in rows:
                held = backoff.get(row.id)
                if held is not None and held[1] > moment:
                    continue
                await fire(row, now)
            progress()
            await poll_wait(wf.clock, opts.polling_frequency)

    return ProcessSpec(wf, name, role, body, opts.err_backoff)
