"""Loading the record an event announces, with luno's version checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._event import Event, Header
from .._metrics import SkipReason
from .._record import Record
from ..adapter import BatchLookup
from ..errors import RecordNotFound, WorkflowError

if TYPE_CHECKING:
    from .._metrics import ProcessMetrics
    from .._workflow import Workflow
    from ._loop import Prefetch

__all__ = ["StaleEvent", "load_current", "prefetcher"]


class StaleEvent(WorkflowError):
    """The event is newer than the record read for it (a lagging replica): retry later."""


async def load_current(
    wf: Workflow[Any, Any],
    event: Event,
    status: int,
    prefetched: dict[str, Record] | None = None,
    probe: ProcessMetrics | None = None,
) -> Record | None:
    """The run's record if ``event`` is its latest news and the run waits in ``status``.

    None (the event is acked and skipped) when the run is gone, when a newer write has
    made the event stale or a duplicate, when the run is at another status, or when it is
    paused, cancelled or deleted. Raises :class:`StaleEvent` when the record read is older
    than the event (a lagging replica): the event is then retried after the back-off.
    A record in ``prefetched`` (read for the event's batch) is used once instead of a lookup.
    Each skip is counted on ``probe`` with luno's reason.
    """
    record = prefetched.pop(event.foreign_id, None) if prefetched else None
    if record is None:
        try:
            record = await wf.store.lookup(event.foreign_id)
        except RecordNotFound:
            wf.debug_log("skipping event: record not found", run_id=event.foreign_id)
            if probe is not None:
                probe.skip(SkipReason.RECORD_NOT_FOUND)
            return None
    raw_version = event.headers.get(Header.RECORD_VERSION)
    # A legacy event without a version is taken at the record's version.
    version = record.meta.version if raw_version is None else int(raw_version)
    if record.meta.version > version:
        # Stale or duplicate: the newer write has its own event.
        if probe is not None:
            probe.skip(SkipReason.EVENT_RECORD_VERSION_LOWER)
        return None
    if record.meta.version < version:
        raise StaleEvent(
            "stale record lookup: record version is lower than event record version",
            workflow_name=wf.name,
            run_id=record.run_id,
        )
    if record.status != status:
        if probe is not None:
            probe.skip(SkipReason.RECORD_STATUS_NOT_IN_EXPECTED_STATE)
        return None
    if record.run_state.stopped():
        wf.debug_log("skipping event of a stopped run", run_id=record.run_id)
        if probe is not None:
            probe.skip(SkipReason.RECORD_STOPPED)
        return None
    return record


def prefetcher(wf: Workflow[Any, Any]) -> tuple[dict[str, Record], Prefetch] | None:
    """A dict and the function filling it with a batch's records, if the store can.

    A prefetched record is as fresh as a lookup made when the batch arrived; the store's
    compare-and-set still refuses a write if the run changed since.
    """
    store = wf.store
    if not isinstance(store, BatchLookup):
        return None
    prefetched: dict[str, Record] = {}

    async def prefetch(run_ids: list[str]) -> None:
        prefetched.clear()
        prefetched.update(await store.lookup_many(run_ids))

    return prefetched, prefetch
