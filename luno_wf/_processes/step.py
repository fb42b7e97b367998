"""Step consumers: one per step status and shard."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import cattrs

from .._builder import StepSpec
from .._event import Event, Header
from .._naming import make_role, topic
from ..errors import InvalidTransition, RecordNotFound, StaleRecord, WorkflowError
from ._loop import ProcessSpec, Progress, consume, with_receiver
from ._pausing import maybe_pause
from ._update import apply_result

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["processes", "shard_keeps"]

DECODE_ERRORS = (ValueError, TypeError, KeyError, cattrs.BaseValidationError, json.JSONDecodeError)


class StaleEvent(WorkflowError):
    """The event is newer than the record read for it (a lagging replica): retry later."""


def shard_keeps(shard: int, total: int) -> Any:
    """A filter keeping the events of shard ``shard`` (1-based) of ``total``.

    Event ids are non-negative, so ``id % total`` puts every event in exactly one shard.
    """

    def keep(event: Event) -> bool:
        return event.id % total == shard - 1

    return keep


def processes(wf: Workflow[Any, Any], spec: StepSpec) -> list[ProcessSpec]:
    """The consumers of one step, one per shard."""
    opts = wf.resolve(spec.options)
    total = max(opts.parallel_count, 1)
    status = spec.from_status
    out = []
    for shard in range(1, total + 1):
        role = make_role(wf.name, str(int(status)), "consumer", str(shard), "of", str(total))
        name = make_role(status.name, "consumer", str(shard), "of", str(total))
        handler = _handler(wf, spec, name, opts.pause_after_err_count)

        def body(
            progress: Progress,
            role: str = role,
            name: str = name,
            handler: Any = handler,
            shard: int = shard,
        ) -> Any:
            return with_receiver(
                wf,
                topic(wf.name, int(status)),
                role,
                opts.polling_frequency,
                lambda receiver: consume(
                    wf,
                    receiver,
                    handler,
                    process_name=name,
                    progress=progress,
                    lag=opts.lag,
                    lag_alert=opts.lag_alert,
                    keep=shard_keeps(shard, total) if total > 1 else None,
                ),
            )

        out.append(ProcessSpec(wf, name, role, body, opts.err_backoff))
    return out


def _handler(wf: Workflow[Any, Any], spec: StepSpec, process_name: str, threshold: int) -> Any:
    status = int(spec.from_status)
    fn = spec.fn

    async def handle(event: Event) -> None:
        try:
            record = await wf.store.lookup(event.foreign_id)
        except RecordNotFound:
            wf.debug_log("skipping event: record not found", run_id=event.foreign_id)
            return
        raw_version = event.headers.get(Header.RECORD_VERSION)
        if raw_version is None:
            if record.status != status:
                return  # a legacy event without a version, for a run that has moved on
            event_version = record.meta.version
        else:
            event_version = int(raw_version)
        if record.meta.version > event_version:
            return  # stale or duplicate event: a newer write has its own event
        if record.meta.version < event_version:
            raise StaleEvent(
                "stale record lookup: record version is lower than event record version",
                workflow_name=wf.name,
                run_id=record.run_id,
            )
        if record.status != status:
            return  # the event's version matches but not its status: not ours to process
        if record.run_state.stopped():
            wf.debug_log("Skipping consumption of stopped workflow record", run_id=record.run_id)
            return
        try:
            run = wf.build_run(record)
        except DECODE_ERRORS as err:
            if await maybe_pause(wf, process_name, record, err, threshold, permanent=True):
                return
            raise
        try:
            result = await fn(run)
        except Exception as err:
            if await maybe_pause(wf, process_name, record, err, threshold):
                return
            raise WorkflowError(
                f"consumer error: {type(err).__name__}: {err}",
                workflow_name=wf.name,
                foreign_id=record.foreign_id,
                run_id=record.run_id,
                status=status,
            ) from err
        try:
            await apply_result(wf, status, result, run)
        except InvalidTransition as err:
            wf.logger.error("%s", err)
            if await maybe_pause(wf, process_name, record, err, threshold, permanent=True):
                return
            raise
        except StaleRecord:
            # Written elsewhere while the step ran (a pause or cancel from the API, say):
            # that write's own event carries the run on.
            wf.debug_log("skipping stale update", run_id=record.run_id)
            return
        wf.clear_errors(process_name, record.run_id)

    return handle
