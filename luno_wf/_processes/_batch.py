"""Where a step consumer's results go: written at once, or collected and written together."""

from __future__ import annotations

from typing import Any

from .._engine import Engine
from .._metrics import SkipReason
from .._record import Record
from .._runstate import RunState
from ..adapter import Ack, BatchStore
from ..errors import StaleRecord

__all__ = ["WriteBatch"]


class WriteBatch:
    """The writes a step consumer has computed but not yet stored, and their events' acks.

    Made per receiver session. With a ``store`` (one that writes many records in one call,
    and a session handling one event at a time with no lag) :meth:`add` queues and
    :meth:`flush` writes the queue with ``store_many``; without one, handlers
    :meth:`write` each record at once.

    Invariant: a run has at most one pending write, and an event whose step produced a
    pending write is acked only after :meth:`flush` has stored it (or found it stale), so
    a crash before the flush redelivers the event and the step runs again, as it would
    after a crash before a single write. The consume loop flushes before it waits for the
    next batch, before handling an event of a run already pending, and when a handler
    fails or the loop is stopped.
    """

    def __init__(
        self, engine: Engine[Any, Any], process_name: str, store: BatchStore | None
    ) -> None:
        self._engine = engine
        self._store = store
        self.batching = store is not None
        """Whether writes are collected (else each is written at once)."""
        self._process_name = process_name
        self._probe = engine.probe(process_name)
        # Pending writes by run id, in the order queued, with the state each run was in.
        self._pending: dict[str, tuple[Record, RunState]] = {}
        self._acks: list[Ack] = []

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self, run_id: str) -> bool:
        """Whether ``run_id`` has a write waiting."""
        return run_id in self._pending

    def add(self, record: Record, previous: RunState) -> None:
        """Queue ``record`` (the run was in ``previous``); only while :attr:`batching`.

        The caller flushes first if the run has a write pending.
        """
        assert record.run_id not in self._pending, "flush before a second write of a run"
        # Stamped and noted now, in the span that made it (flushed after it ended).
        self._pending[record.run_id] = (self._engine.tracing.writing(record), previous)

    async def write(self, record: Record, previous: RunState) -> None:
        """Write ``record`` at once (the run was in ``previous``).

        A write found stale (the run was written elsewhere meanwhile: a pause or cancel
        from the API, say) is skipped: that other write's own event carries the run on.
        """
        try:
            await self._engine.write(record, previous)
        except StaleRecord:
            self._stale(record)
            return
        self._engine.errors.clear(self._process_name, record.run_id)

    def _stale(self, record: Record) -> None:
        self._engine.tracing.stale()
        self._engine.debug_log("skipping stale update", run_id=record.run_id)
        self._probe.skip(SkipReason.EVENT_RECORD_VERSION_LOWER)

    def discard(self) -> None:
        """Drop pending writes and acks: their events are redelivered (the loop has ended)."""
        self._pending, self._acks = {}, []

    def defer_ack(self, ack: Ack) -> None:
        """Ack the event that queued the last write once that write is flushed."""
        self._acks.append(ack)

    async def flush(self) -> None:
        """Store every pending write in one call, then ack their events.

        Stale writes are skipped as in :meth:`put`. Any other refusal is raised after the
        writes that went through were accounted for, and no event is acked then.
        """
        if not self._pending or self._store is None:
            return
        pending, acks = list(self._pending.values()), self._acks
        self.discard()
        engine = self._engine
        outcomes = await self._store.store_many([record for record, _ in pending])
        failure: Exception | None = None
        for (record, before), outcome in zip(pending, outcomes, strict=True):
            if outcome is None:
                engine.written(record, before)
                engine.errors.clear(self._process_name, record.run_id)
            elif isinstance(outcome, StaleRecord):
                self._stale(record)
            elif failure is None:
                failure = outcome
        if failure is not None:
            raise failure
        for ack in acks:
            await ack()

    async def flush_quietly(self) -> None:
        """Flush while stopping on an error; a failure is logged, not raised.

        The events of writes that could not be stored are redelivered after the restart.
        """
        try:
            await self.flush()
        except Exception as err:
            self._engine.logger.warning(
                "could not write a batch's results while stopping on an error (their "
                "events are redelivered): %s",
                err,
            )
