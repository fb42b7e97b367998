"""Loading the record an event announces, with luno's version checks."""

from __future__ import annotations

from typing import Any

from .._engine import Engine
from .._event import Event, Header
from .._metrics import SkipReason
from .._record import Record
from ..adapter import BatchLookup
from ..errors import RecordNotFound, WorkflowError

__all__ = ["EventLoader", "Prefetched", "StaleEvent"]


class StaleEvent(WorkflowError):
    """The event is newer than the record read for it (a lagging replica): retry later."""


class Prefetched:
    """The records of one received batch, read with one ``lookup_many``.

    A prefetched record is as fresh as a lookup made when the batch arrived; the store's
    compare-and-set still refuses a write if the run changed since.
    """

    def __init__(self, store: BatchLookup) -> None:
        self._store = store
        self.records: dict[str, Record] = {}
        """The current batch's records by run id; each is taken (popped) once."""

    async def fetch(self, run_ids: list[str]) -> None:
        """Read the records of ``run_ids``, replacing the previous batch's."""
        self.records.clear()
        self.records.update(await self._store.lookup_many(run_ids))


class EventLoader:
    """Reads the record of each event a consumer of ``status`` receives.

    :meth:`load` returns the run's record if the event is its latest news and the run
    waits in ``status``. It returns None (the event is acked and skipped) when the run is
    gone, when a newer write has made the event stale or a duplicate, when the run is at
    another status, or when it is paused, cancelled or deleted; each skip is counted with
    luno's reason. It raises :class:`StaleEvent` when the record read is older than the
    event (a lagging replica): the event is then retried after the back-off.
    """

    def __init__(
        self,
        engine: Engine[Any, Any],
        status: int,
        process_name: str,
        prefetched: Prefetched | None = None,
    ) -> None:
        self._engine = engine
        self._status = status
        self._probe = engine.probe(process_name)
        self._prefetched = None if prefetched is None else prefetched.records

    async def load(self, event: Event) -> Record | None:
        """See the class docstring."""
        prefetched = self._prefetched
        record = None if prefetched is None else prefetched.pop(event.foreign_id, None)
        if record is None:
            try:
                record = await self._engine.store.lookup(event.foreign_id)
            except RecordNotFound:
                self._engine.debug_log("skipping event: record not found", run_id=event.foreign_id)
                self._probe.skip(SkipReason.RECORD_NOT_FOUND)
                return None
        raw_version = event.headers.get(Header.RECORD_VERSION)
        # A legacy event without a version is taken at the record's version.
        version = record.meta.version if raw_version is None else int(raw_version)
        if record.meta.version > version:
            # Stale or duplicate: the newer write has its own event.
            self._probe.skip(SkipReason.EVENT_RECORD_VERSION_LOWER)
            return None
        if record.meta.version < version:
            raise StaleEvent(
                "stale record lookup: record version is lower than event record version",
                workflow_name=self._engine.name,
                run_id=record.run_id,
            )
        if record.status != self._status:
            self._probe.skip(SkipReason.RECORD_STATUS_NOT_IN_EXPECTED_STATE)
            return None
        if record.run_state.stopped():
            self._engine.debug_log("skipping event of a stopped run", run_id=record.run_id)
            self._probe.skip(SkipReason.RECORD_STOPPED)
            return None
        return record
