"""Step consumers: one per step status and shard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._definition import StepSpec
from .._engine import Engine
from .._event import Event
from .._metrics import SkipReason
from .._naming import make_role, topic
from .._options import Resolved
from .._record import Record
from .._run import Run
from .._tracing import Work
from ..adapter import BatchLookup, BatchReceiver, BatchStore, EventReceiver
from ..errors import InvalidTransition, WorkflowError
from ._batch import WriteBatch
from ._consumer import consumer_process, intake_of
from ._load import EventLoader, Prefetched
from ._loop import Prefetching, Receiver, consume
from ._pausing import Failures
from ._process import LiveProcess, Progress
from ._update import next_record

__all__ = ["StepHandler", "processes", "shard_keeps"]

_STEP = Work.STEP  # read once: an enum member lookup costs a fair part of the no-op span


def shard_keeps(shard: int, total: int) -> Callable[[Event], bool]:
    """A filter keeping the events of shard ``shard`` (1-based) of ``total``.

    Event ids are non-negative, so ``id % total`` puts every event in exactly one shard.
    """

    def keep(event: Event) -> bool:
        return event.id % total == shard - 1

    return keep


def processes(engine: Engine[Any, Any], spec: StepSpec) -> list[LiveProcess]:
    """The consumers of one step, one per shard."""
    opts = engine.resolve(spec.options)
    total = max(opts.parallel_count, 1)
    return [
        _StepConsumer(engine, spec, opts, shard, total).process() for shard in range(1, total + 1)
    ]


class _StepConsumer:
    """One shard of a step: how each receiver session of it is set up."""

    def __init__(
        self, engine: Engine[Any, Any], spec: StepSpec, opts: Resolved, shard: int, total: int
    ) -> None:
        of = (str(shard), "of", str(total))
        self.engine = engine
        self.spec = spec
        self.opts = opts
        self.status = int(spec.from_status)
        self.name = make_role(spec.from_status.name, "consumer", *of)
        self.role = make_role(engine.name, str(self.status), "consumer", *of)
        self.keep = shard_keeps(shard, total) if total > 1 else None

    def process(self) -> LiveProcess:
        return consumer_process(
            self.engine,
            name=self.name,
            role=self.role,
            topic=topic(self.engine.name, self.status),
            polling=self.opts.polling_frequency,
            backoff=self.opts.err_backoff,
            session=self.session,
        )

    async def session(self, receiver: EventReceiver, progress: Progress) -> None:
        """Consume with prefetched lookups and batched writes where the adapters allow.

        Batching needs a receiver that hands out batches, a store with ``store_many``, one
        event at a time and no lag (a lag wait would hold pending writes back).
        """
        engine, opts, store = self.engine, self.opts, self.engine.store
        batches = isinstance(receiver, BatchReceiver)
        batching = batches and opts.concurrency <= 1 and not opts.lag
        writes = WriteBatch(
            engine, self.name, store if batching and isinstance(store, BatchStore) else None
        )
        prefetched = Prefetched(store) if batches and isinstance(store, BatchLookup) else None
        source: Receiver[Event] = receiver
        if isinstance(receiver, BatchReceiver) and (prefetched or writes.batching):
            fetch = None if prefetched is None else prefetched.fetch
            flushed = writes if writes.batching else None
            source = Prefetching(receiver, fetch, self.keep, flushed)
        handler = StepHandler(
            engine,
            self.spec,
            EventLoader(engine, self.status, self.name, prefetched),
            Failures(engine, self.name, opts.pause_after_err_count),
            writes,
        )
        intake = intake_of(
            engine, self.name, lag=opts.lag, lag_alert=opts.lag_alert, keep=self.keep
        )
        try:
            await consume(
                source,
                handler,
                intake,
                progress,
                concurrency=opts.concurrency,
                batch=writes if writes.batching else None,
            )
        finally:
            writes.discard()  # what a failed flush left: redelivered with the receiver's events


class StepHandler:
    """Runs a step's function on the run an event announces and writes what it returned.

    Args:
        engine: The workflow's engine.
        spec: The step.
        loader: Reads the event's record, skipping stale and foreign events.
        failures: Counts errors and pauses runs after too many.
        writes: Where the new record goes (written at once, or batched).

    """

    def __init__(
        self,
        engine: Engine[Any, Any],
        spec: StepSpec,
        loader: EventLoader,
        failures: Failures,
        writes: WriteBatch,
    ) -> None:
        self._engine = engine
        self._spec = spec
        self._status = int(spec.from_status)
        self._loader = loader
        self._failures = failures
        self._writes = writes
        self._probe = engine.probe(failures.process_name)
        self._span = engine.tracing.span

    async def __call__(self, event: Event) -> None:
        if self._writes.pending(event.foreign_id):
            await self._writes.flush()  # the run's queued write first: this event may follow it
        record = await self._loader.load(event)
        if record is None:
            return
        with self._span(_STEP, record, headers=event.headers):
            run = await self._failures.decode(record)
            if run is None:
                return
            updated = await self.step(record, run)
            if updated is None:
                return
            await self._writes.put(updated, run.record.run_state)

    async def step(self, record: Record, run: Run[Any, Any]) -> Record | None:
        """Run the step function; the record to write, None if there is nothing to write."""
        failures = self._failures
        try:
            result = await self._spec.fn(run)
        except Exception as err:
            if await failures.pause_if_due(record, err):
                return None
            raise WorkflowError(
                f"consumer error: {type(err).__name__}: {err}",
                workflow_name=self._engine.name,
                foreign_id=record.foreign_id,
                run_id=record.run_id,
                status=self._status,
            ) from err
        try:
            updated = next_record(self._engine, self._status, result, run)
        except InvalidTransition as err:
            self._engine.logger.error("%s", err)
            if await failures.pause_if_due(record, err, permanent=True):
                return None
            raise
        if updated is None:
            self._probe.skip(SkipReason.NEXT_VALUE_SPECIFIED_SKIP)
            failures.clear(record.run_id)
        return updated
