"""Step consumers: one per step status and shard."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import cattrs

from .._builder import StepSpec
from .._event import Event
from .._metrics import SkipReason
from .._naming import make_role, topic
from .._record import Record
from ..errors import InvalidTransition, StaleRecord, WorkflowError
from ._batch import WriteBatch, write_batch
from ._load import load_current, prefetcher
from ._loop import ProcessSpec, consumer_process
from ._pausing import maybe_pause
from ._update import next_record

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["processes", "shard_keeps"]

DECODE_ERRORS = (ValueError, TypeError, KeyError, cattrs.BaseValidationError, json.JSONDecodeError)


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
    status = int(spec.from_status)

    def shard_process(shard: int) -> ProcessSpec:
        of = (str(shard), "of", str(total))
        name = make_role(spec.from_status.name, "consumer", *of)
        prefetch = prefetcher(wf)
        writes = write_batch(wf, name, opts.concurrency, bool(opts.lag))
        return consumer_process(
            wf,
            name=name,
            role=make_role(wf.name, str(status), "consumer", *of),
            topic=topic(wf.name, status),
            handle=_handler(
                wf,
                spec,
                name,
                opts.pause_after_err_count,
                prefetch[0] if prefetch else None,
                writes,
            ),
            polling=opts.polling_frequency,
            backoff=opts.err_backoff,
            lag=opts.lag,
            lag_alert=opts.lag_alert,
            keep=shard_keeps(shard, total) if total > 1 else None,
            concurrency=opts.concurrency,
            prefetch=prefetch[1] if prefetch else None,
            batch=writes,
        )

    return [shard_process(shard) for shard in range(1, total + 1)]


def _handler(
    wf: Workflow[Any, Any],
    spec: StepSpec,
    process_name: str,
    threshold: int,
    prefetched: dict[str, Record] | None,
    batch: WriteBatch | None,
) -> Any:
    status = int(spec.from_status)
    fn = spec.fn
    probe = wf.process_metrics(process_name)

    async def handle(event: Event) -> None:
        batching = batch is not None and batch.active
        if batch is not None and batching and batch.pending(event.foreign_id):
            await batch.flush()  # the run's queued write first: this event may follow it
        record = await load_current(wf, event, status, prefetched, probe)
        if record is None:
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
            updated = next_record(wf, status, result, run)
        except InvalidTransition as err:
            wf.logger.error("%s", err)
            if await maybe_pause(wf, process_name, record, err, threshold, permanent=True):
                return
            raise
        if updated is None:
            if probe is not None:
                probe.skip(SkipReason.NEXT_VALUE_SPECIFIED_SKIP)
        elif batching:
            assert batch is not None
            batch.add(updated, run.record.run_state)  # the batch clears the errors once written
            return
        else:
            try:
                await wf.write(updated, run.record.run_state)
            except StaleRecord:
                # Written elsewhere while the step ran (a pause or cancel from the API,
                # say): that write's own event carries the run on.
                wf.debug_log("skipping stale update", run_id=record.run_id)
                if probe is not None:
                    probe.skip(SkipReason.EVENT_RECORD_VERSION_LOWER)
                return
        wf.clear_errors(process_name, record.run_id)

    return handle
