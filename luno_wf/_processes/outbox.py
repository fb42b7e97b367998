"""The outbox publisher: sends stored outbox rows to the streamer, then deletes them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from .._naming import make_role
from .._outbox import OutboxData, decode_outbox_data
from ..adapter import BatchOutboxDeleter, BatchSender, EventSender, OutboxDataLister
from ._loop import ProcessSpec, Progress, ensure_not_cancelled

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["LOOKUP_LIMIT", "process"]

LOOKUP_LIMIT = 1000
POLLING = timedelta(milliseconds=250)
BACKOFF = timedelta(milliseconds=500)
LAG_ALERT = timedelta(minutes=1)
NAME = "outbox-consumer"


def process(wf: Workflow[Any, Any]) -> ProcessSpec:
    """The outbox publisher of a workflow.

    It wakes as soon as this process stores a record (so latency does not wait for a polling
    interval) and polls every 250 ms for rows written by other processes.

    With metrics on, each batch sets the lag gauges from its oldest row's write time and
    observes the time taken to send and delete the whole batch.
    """
    batch_delete = isinstance(wf.store, BatchOutboxDeleter)
    decoded_lister = isinstance(wf.store, OutboxDataLister)
    probe = wf.process_metrics(NAME)
    picked_up = None if probe is None else probe.lag_recorder(wf.clock, LAG_ALERT)

    async def next_batch() -> tuple[list[tuple[str, OutboxData | None]], datetime | None]:
        """Rows to publish as (row id, payload), payload None if it cannot be decoded.

        Also the oldest row's write time, if the store gives it (for the lag metric).
        """
        if decoded_lister:
            lister = cast(OutboxDataLister, wf.store)
            decoded = await lister.list_outbox_data(wf.name, LOOKUP_LIMIT)
            return list(decoded), decoded[0][1].created_at if decoded else None
        out: list[tuple[str, OutboxData | None]] = []
        rows = await wf.store.list_outbox_events(wf.name, LOOKUP_LIMIT)
        for row in rows:
            try:
                out.append((row.id, decode_outbox_data(row.data)))
            except ValueError as err:
                # A row that cannot be decoded can never be published; dropping it
                # (loudly) beats blocking every later row behind it forever.
                wf.logger.error(
                    "dropping undecodable outbox row %s of %s: %s", row.id, wf.name, err
                )
                out.append((row.id, None))
        return out, rows[0].created_at if rows else None

    async def idle() -> None:
        """Wait for a write in this process, or the polling interval (writes elsewhere)."""
        try:
            async with asyncio.timeout(POLLING.total_seconds()):
                await wf.outbox_wake.wait()
        except TimeoutError:
            pass

    async def body(progress: Progress) -> None:
        senders: dict[str, EventSender] = {}
        batch_send: dict[str, bool] = {}
        try:
            while True:
                ensure_not_cancelled()
                wf.outbox_wake.clear()
                rows, oldest = await next_batch()
                if not rows:
                    await idle()
                    continue
                started = time.perf_counter()
                if oldest is not None and picked_up is not None:
                    picked_up(oldest)
                batches: dict[str, list[tuple[str, int, Mapping[str, str]]]] = {}
                published: list[str] = []
                for row_id, data in rows:
                    published.append(row_id)
                    if data is None:
                        continue
                    if not data.topic:
                        wf.logger.error(
                            "dropping outbox row %s of %s: no topic header", row_id, wf.name
                        )
                        continue
                    batches.setdefault(data.topic, []).append(
                        (data.run_id, data.type, data.headers)
                    )
                for topic_name, events in batches.items():
                    sender = senders.get(topic_name)
                    if sender is None:
                        sender = senders[topic_name] = await wf.streamer.new_sender(topic_name)
                        batch_send[topic_name] = isinstance(sender, BatchSender)
                    if batch_send[topic_name]:
                        await cast(BatchSender, sender).send_many(events)
                    else:
                        for foreign_id, type_, headers in events:
                            await sender.send(foreign_id, type_, headers)
                if batch_delete:
                    await cast(BatchOutboxDeleter, wf.store).delete_outbox_events(published)
                else:
                    for row_id in published:
                        await wf.store.delete_outbox_event(row_id)
                if probe is not None:
                    probe.observe(time.perf_counter() - started)
                progress()
                if len(rows) < LOOKUP_LIMIT:
                    # A short batch emptied the outbox as of its listing; rows written since
                    # have set the wake-up, so this returns at once if there are any.
                    await idle()
        finally:
            for sender in senders.values():
                await sender.close()

    return ProcessSpec(wf, NAME, make_role(wf.name, NAME), body, BACKOFF)
