"""Step results of one received batch, written together with ``BatchStore.store_many``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._metrics import SkipReason
from .._record import Record
from .._runstate import RunState
from ..adapter import Ack, BatchStore
from ..errors import StaleRecord

if TYPE_CHECKING:
    from .._metrics import ProcessMetrics
    from .._workflow import Workflow

__all__ = ["WriteBatch", "write_batch"]


class WriteBatch:
    """The writes a step consumer has computed but not yet stored, and their events' acks.

    Invariant: a run has at most one pending write, and an event whose step produced a
    pending write is acked only after :meth:`flush` has stored it (or found it stale), so
    a crash before the flush redelivers the event and the step runs again, as it would
    after a crash before a single write. The consume loop flushes before it waits for the
    next batch, before handling an event of a run already pending, and when a handler
    fails or the loop is stopped.
    """

    def __init__(
        self,
        wf: Workflow[Any, Any],
        store: BatchStore,
        process_name: str,
        probe: ProcessMetrics | None,
    ) -> None:
        self._wf = wf
        self._store = store
        self._process_name = process_name
        self._probe = probe
        # Pending writes by run id, in the order queued, with the state each run was in.
        self._pending: dict[str, tuple[Record, RunState]] = {}
        self._acks: list[Ack] = []
        # Set by the consume loop when its receiver hands out batches, so that it flushes
        # before waiting for the next one; until then handlers write one by one.
        self.active = False

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self, run_id: str) -> bool:
        """Whether ``run_id`` has a write waiting."""
        return run_id in self._pending

    def add(self, record: Record, previous: RunState) -> None:
        """Queue ``record`` (the run was in ``previous``); the caller flushes first if needed."""
        assert record.run_id not in self._pending, "flush before a second write of a run"
        self._pending[record.run_id] = (record, previous)

    def discard(self) -> None:
        """Drop pending writes and acks: their events are redelivered (the loop has ended)."""
        self._pending, self._acks = {}, []

    def defer_ack(self, ack: Ack) -> None:
        """Ack the event that queued the last write once that write is flushed."""
        self._acks.append(ack)

    async def flush(self) -> None:
        """Store every pending write in one call, then ack their events.

        A write found stale (the run was written elsewhere meanwhile: a pause or cancel
        from the API, say) is skipped, as a single write's would be: that other write's
        own event carries the run on. Any other refusal is raised after the writes that
        went through were accounted for, and no event is acked then.
        """
        if not self._pending:
            return
        pending, acks = list(self._pending.values()), self._acks
        self.discard()
        wf = self._wf
        outcomes = await self._store.store_many([record for record, _ in pending])
        failure: Exception | None = None
        for (record, before), outcome in zip(pending, outcomes, strict=True):
            if outcome is None:
                wf.written(record, before)
                wf.clear_errors(self._process_name, record.run_id)
            elif isinstance(outcome, StaleRecord):
                wf.debug_log("skipping stale update", run_id=record.run_id)
                if self._probe is not None:
                    self._probe.skip(SkipReason.EVENT_RECORD_VERSION_LOWER)
            elif failure is None:
                failure = outcome
        if failure is not None:
            raise failure
        for ack in acks:
            await ack()


def write_batch(
    wf: Workflow[Any, Any], process_name: str, concurrency: int, lag: bool
) -> WriteBatch | None:
    """A write batch for a step consumer, if its store and options allow one.

    Batching needs a store with ``store_many``, one event at a time (``concurrency`` 1) and
    no consumer lag (a lag wait would hold the pending writes back).
    """
    store = wf.store
    if concurrency > 1 or lag or not isinstance(store, BatchStore):
        return None
    return WriteBatch(wf, store, process_name, wf.process_metrics(process_name))
