"""Loading the record an event announces, with luno's version checks."""

from __future__ import annotations

from typing import Any

from .._engine import Engine
from .._event import Event, Header
from .._metrics import SkipReason
from .._record import Record
from ..adapter import BatchLookup
from ..errors import PoisonEvent, RecordNotFound, WorkflowError

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


AHEAD_LIMIT = 10
"""Deliveries of an event whose version stays ahead of its record before it is set aside."""


class EventLoader:
    """Reads the record of each event a consumer of ``status`` receives.

    :meth:`load` returns the run's record if the event is its latest news and the run
    waits in ``status``. It returns None (the event is acked and skipped) when the run is
    gone, when a newer write has made the event stale or a duplicate, when the run is at
    another status, or when it is paused, cancelled or deleted; each skip is counted with
    luno's reason. It raises :class:`StaleEvent` when the record read is older than the
    event (a lagging replica): the event is then retried after the back-off, and set aside
    (:class:`~luno_wf.errors.PoisonEvent`) after ``AHEAD_LIMIT`` deliveries. An event
    whose version header is not a number, or whose headers a streamer marked malformed,
    raises :class:`~luno_wf.errors.PoisonEvent` at once; a record that cannot be read
    raises :class:`~luno_wf.errors.CorruptRecord` (set aside too).
    """

    def __init__(
        self,
        engine: Engine[Any, Any],
        status: int,
        process_name: str,
        prefetched: Prefetched | None = None,
        ahead: dict[int, int] | None = None,
    ) -> None:
        self._engine = engine
        self._status = status
        self._probe = engine.probe(process_name)
        self._prefetched = None if prefetched is None else prefetched.records
        self._ahead: dict[int, int] = {} if ahead is None else ahead

    def version(self, event: Event, record: Record) -> int:
        """The record version the event announces; raises PoisonEvent if it cannot tell.

        A legacy event without a version is taken at the record's version.
        """
        headers = event.headers
        if Header.MALFORMED in headers:
            raise PoisonEvent(
                f"the event's headers are not a JSON object of strings: "
                f"{headers[Header.MALFORMED][:200]}",
                workflow_name=self._engine.name,
                run_id=event.foreign_id,
            )
        raw = headers.get(Header.RECORD_VERSION)
        if raw is None:
            return record.meta.version
        try:
            return int(raw)
        except ValueError:
            raise PoisonEvent(
                f"the event's {Header.RECORD_VERSION} header is not a number: {raw[:50]!r}",
                workflow_name=self._engine.name,
                run_id=event.foreign_id,
            ) from None

    def ahead_of_record(self, event: Event, stored: int, announced: int) -> None:
        """Raise StaleEvent (retried later), or PoisonEvent once retried too often."""
        count = self._ahead.get(event.id, 0) + 1
        self._ahead[event.id] = count
        message = (
            f"stale record lookup: record version {stored} is lower than event record "
            f"version {announced}"
        )
        if count < AHEAD_LIMIT:
            raise StaleEvent(message, workflow_name=self._engine.name, run_id=event.foreign_id)
        del self._ahead[event.id]
        raise PoisonEvent(
            f"{message}, still after {count} deliveries",
            workflow_name=self._engine.name,
            run_id=event.foreign_id,
        )

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
        raw = event.headers.get(Header.RECORD_VERSION)
        # The usual case without a call: a version header of decimal digits.
        version = int(raw) if raw is not None and raw.isdecimal() else self.version(event, record)
        if record.meta.version > version:
            # Stale or duplicate: the newer write has its own event.
            self._probe.skip(SkipReason.EVENT_RECORD_VERSION_LOWER)
            return None
        if record.meta.version < version:
            self.ahead_of_record(event, record.meta.version, version)
        elif self._ahead:
            self._ahead.pop(event.id, None)
        if record.status != self._status:
            self._probe.skip(SkipReason.RECORD_STATUS_NOT_IN_EXPECTED_STATE)
            return None
        if record.run_state.stopped():
            self._engine.debug_log("skipping event of a stopped run", run_id=record.run_id)
            self._probe.skip(SkipReason.RECORD_STOPPED)
            return None
        return record
