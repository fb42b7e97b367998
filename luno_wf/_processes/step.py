"""Step consumers: one per step status and shard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._actor import process_actor
from .._definition import StepSpec
from .._engine import Engine
from .._event import Event
from .._metrics import SkipReason
from .._naming import make_role, topic
from .._options import Resolved
from .._record import Record
from .._tracing import Work
from ..adapter import BatchLookup, BatchReceiver, BatchStore, EventReceiver
from ..errors import InvalidTransition, WorkflowError
from ._batch import WriteBatch
from ._consumer import consumer_process, intake_of
from ._load import EventLoader, Prefetched
from ._loop import Prefetching, Receiver, consume
from ._pausing import DECODE_ERRORS, Failures
from ._process import LiveProcess, Progress
from ._update import next_record

__all__ = ["StepHandler", "processes", "shard_keeps", "shard_names"]

_STEP = Work.STEP  # read once: an enum member lookup costs a fair part of the no-op span


def shard_keeps(shard: int, total: int) -> Callable[[Event], bool]:
    """A filter keeping the events of shard ``shard`` (1-based) of ``total``.

    Event ids are non-negative, so ``id % total`` puts every event in exactly one shard.
    """

    def keep(event: Event) -> bool:
        return event.id % total == shard - 1

    return keep


def shard_names(workflow_name: str, spec: StepSpec, shard: int, total: int) -> tuple[str, str]:
    """The process name and the role of shard ``shard`` (1-based) of ``total`` of a step."""
    of = (str(shard), "of", str(total))
    name = make_role(spec.from_status.name, "consumer", *of)
    return name, make_role(workflow_name, str(int(spec.from_status)), "consumer", *of)


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
        self.engine = engine
        self.spec = spec
        self.opts = opts
        self.status = int(spec.from_status)
        self.name, self.role = shard_names(engine.name, spec, shard, total)
        self.keep = shard_keeps(shard, total) if total > 1 else None
        self.shard = (shard, total) if total > 1 else None
        self.actor = process_actor("step", spec.from_status.name)
        self.topic = topic(engine.name, self.status)
        # Deliveries of events whose version stays ahead of their record, by event id; it
        # outlives receiver sessions (each such delivery restarts the session).
        self.ahead: dict[int, int] = {}

    def process(self) -> LiveProcess:
        return consumer_process(
            self.engine,
            name=self.name,
            role=self.role,
            topic=self.topic,
            polling=self.opts.polling_frequency,
            backoff=self.opts.err_backoff,
            session=self.session,
            shard=self.shard,
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
            activity = engine.states.activity(self.name)
            source = Prefetching(receiver, fetch, self.keep, flushed, activity)
        handler = StepHandler(
            engine,
            self.spec,
            EventLoader(engine, self.status, self.name, prefetched, self.ahead),
            Failures(engine, self.name, opts.pause_after_err_count, self.actor),
            writes,
        )
        intake = intake_of(
            engine,
            self.name,
            topic=self.topic,
            lag=opts.lag,
            lag_alert=opts.lag_alert,
            keep=self.keep,
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
            await writes.flush()  # drained: the last results are written before the role goes
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
        self._fn = spec.fn
        self._status = int(spec.from_status)
        self._loader = loader
        self._failures = failures
        self._writes = writes
        self._probe = engine.probe(failures.process_name)
        self._actor = failures.actor
        self._span = engine.tracing.span

    async def __call__(self, event: Event) -> None:
        writes = self._writes
        if writes.pending(event.foreign_id):
            await writes.flush()  # the run's queued write first: this event may follow it
        record = await self._loader.load(event)
        if record is None:
            return
        with self._span(_STEP, record, headers=event.headers):
            try:
                run = self._engine.build_run(record, self._actor)
            except DECODE_ERRORS as err:
                await self._failures.undecodable(record, err)
                return
            try:
                result = await self._fn(run)
            except Exception as err:
                await self.failed(record, err)
                return
            try:
                updated = next_record(self._engine, self._status, result, run, self._actor)
            except InvalidTransition as err:
                await self.invalid(record, err)
                return
            if updated is None:
                self._probe.skip(SkipReason.NEXT_VALUE_SPECIFIED_SKIP)
                self._failures.clear(record.run_id)
            elif writes.batching:
                writes.add(updated, run.record.run_state)  # the batch clears errors once written
            else:
                await writes.write(updated, run.record.run_state)

    async def failed(self, record: Record, err: Exception) -> None:
        """The step function raised: pause the run if due, else raise (the event retries)."""
        if await self._failures.pause_if_due(record, err):
            return
        raise WorkflowError(
            f"consumer error: {type(err).__name__}: {err}",
            workflow_name=self._engine.name,
            foreign_id=record.foreign_id,
            run_id=record.run_id,
            status=self._status,
        ) from err

    async def invalid(self, record: Record, err: InvalidTransition) -> None:
        """The step returned a status the graph does not allow: log, pause or raise."""
        self._engine.logger.error("%s", err)
        if not await self._failures.pause_if_due(record, err, permanent=True):
            raise err
