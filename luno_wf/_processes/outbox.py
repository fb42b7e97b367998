"""The outbox publisher: sends stored outbox rows to the streamer, then deletes them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .._engine import Engine, OutboxWake
from .._naming import make_role
from .._outbox import OutboxData, decode_outbox_data
from ..adapter import BatchOutboxDeleter, BatchSender, EventSender, OutboxDataLister
from ._process import LiveProcess, Progress, ensure_not_cancelled

__all__ = ["LOOKUP_LIMIT", "NAME", "OutboxPublisher", "SWEEPER_NAME", "process"]

LOOKUP_LIMIT = 1000
POLLING = timedelta(milliseconds=250)
BACKOFF = timedelta(milliseconds=500)
LAG_ALERT = timedelta(minutes=1)
NAME = "outbox-consumer"
SWEEPER_NAME = "outbox-sweeper"
"""The publisher's name when the store writes the workflow's events itself."""

Row = tuple[str, OutboxData | None]
"""An outbox row to publish: its id, and its payload (None if it cannot be decoded)."""
Outgoing = tuple[str, int, Mapping[str, str]]
"""An event to send: foreign id (the run id), type (the status), headers."""


def process(engine: Engine[Any, Any], *, sweep_only: bool = False) -> LiveProcess:
    """The outbox publisher of a workflow, as a live process (under luno's role name).

    With ``sweep_only`` (the store writes the workflow's events itself, see
    :class:`~luno_wf.adapter.DirectEvents`) it is named ``outbox-sweeper``, and only polls
    for rows other writers left (an earlier version, a tool writing through a store of
    its own): this process's writes never wake it.
    """
    name = SWEEPER_NAME if sweep_only else NAME
    publisher = OutboxPublisher(engine, name, OutboxWake() if sweep_only else engine.outbox_wake)
    return LiveProcess(engine, name, make_role(engine.name, NAME), publisher.run, BACKOFF)


class OutboxPublisher:
    """Publishes a workflow's outbox rows: list, send grouped by topic, delete.

    It wakes as soon as this process stores a record (so latency does not wait for a
    polling interval) and polls every 250 ms for rows written by other processes. A row is
    deleted only after its event was sent, so a crash between the two sends it again
    (at-least-once); consumers skip the duplicate by its record version.

    With metrics on, each batch sets the lag gauges from its oldest row's write time and
    observes the time taken to send and delete the whole batch.

    Args:
        engine: The workflow's engine.
        name: The process's name (in ``Workflow.states()`` and the metrics).
        wake: What wakes it besides its polling (default: this process's writes).

    """

    def __init__(
        self, engine: Engine[Any, Any], name: str = NAME, wake: OutboxWake | None = None
    ) -> None:
        self._engine = engine
        self._name = name
        self._wake = engine.outbox_wake if wake is None else wake
        self._store = engine.store
        self._probe = engine.probe(name)
        # Capabilities, checked once (a runtime Protocol check is not free).
        self._lister = self._store if isinstance(self._store, OutboxDataLister) else None
        self._deleter = self._store if isinstance(self._store, BatchOutboxDeleter) else None
        self._senders: dict[str, EventSender] = {}
        self._batch_senders: dict[str, BatchSender] = {}

    async def run(self, progress: Progress) -> None:
        """Publish until cancelled; the senders opened are closed on the way out."""
        wake = self._wake
        picked_up = self._probe.lag_recorder(self._engine.clock, LAG_ALERT)
        activity = self._engine.states.activity(self._name)
        try:
            while not activity.draining:
                ensure_not_cancelled()
                wake.clear()
                rows, oldest = await self.next_batch()
                if rows:
                    started = time.perf_counter()
                    if oldest is not None:
                        picked_up(oldest)
                    await self.publish(rows)
                    self._probe.observe(time.perf_counter() - started)
                    progress()
                if len(rows) < LOOKUP_LIMIT:
                    # A short batch emptied the outbox as of its listing; rows written since
                    # have set the wake-up, so this returns at once if there are any.
                    activity.waiting = True
                    await wake.wait(POLLING.total_seconds())
                    activity.waiting = False
        finally:
            senders, self._senders, self._batch_senders = self._senders, {}, {}
            for sender in senders.values():
                await sender.close()

    async def next_batch(self) -> tuple[list[Row], datetime | None]:
        """Up to ``LOOKUP_LIMIT`` rows, and the oldest one's write time if the store says."""
        name = self._engine.name
        if self._lister is not None:
            decoded = await self._lister.list_outbox_data(name, LOOKUP_LIMIT)
            return list(decoded), decoded[0][1].created_at if decoded else None
        out: list[Row] = []
        rows = await self._store.list_outbox_events(name, LOOKUP_LIMIT)
        for row in rows:
            try:
                out.append((row.id, decode_outbox_data(row.data)))
            except ValueError as err:
                # A row that cannot be decoded can never be published; dropping it
                # (loudly) beats blocking every later row behind it forever.
                self._engine.logger.error(
                    "dropping undecodable outbox row %s of %s: %s", row.id, name, err
                )
                out.append((row.id, None))
        return out, rows[0].created_at if rows else None

    async def publish(self, rows: list[Row]) -> None:
        """Send the rows' events, then delete every row (including those dropped)."""
        by_topic: dict[str, list[Outgoing]] = {}
        for row_id, data in rows:
            if data is None:
                continue
            if not data.topic:
                self._engine.logger.error(
                    "dropping outbox row %s of %s: no topic header", row_id, self._engine.name
                )
                continue
            by_topic.setdefault(data.topic, []).append((data.run_id, data.type, data.headers))
        for topic_name, events in by_topic.items():
            await self.send(topic_name, events)
        await self.delete([row_id for row_id, _ in rows])

    async def send(self, topic_name: str, events: list[Outgoing]) -> None:
        """Send ``events`` to ``topic_name``, in order, in one call where the sender can."""
        batch_sender = self._batch_senders.get(topic_name)
        if batch_sender is not None:
            await batch_sender.send_many(events)
            return
        sender = self._senders.get(topic_name)
        if sender is None:
            sender = await self._engine.streamer.new_sender(topic_name)
            self._senders[topic_name] = sender
            if isinstance(sender, BatchSender):
                self._batch_senders[topic_name] = sender
                await sender.send_many(events)
                return
        for foreign_id, type_, headers in events:
            await sender.send(foreign_id, type_, headers)

    async def delete(self, row_ids: list[str]) -> None:
        """Delete the published rows, in one call where the store can."""
        if self._deleter is not None:
            await self._deleter.delete_outbox_events(row_ids)
            return
        for row_id in row_ids:
            await self._store.delete_outbox_event(row_id)
