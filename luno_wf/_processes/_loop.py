"""The consume loop every consumer shares: steps, timeouts, hooks, deletion, connectors.

One event at a time the loop waits out the process's lag, reports its lag, drops what
the process's filter rejects (acked, counted as skipped) and dispatches the rest. How an
event is dispatched is chosen once per receiver session:

- :func:`one_at_a_time`: handle, ack, next (luno's loop);
- :class:`Concurrent`: up to ``concurrency`` events at once, never two of the same run;
- :func:`batching`: one at a time, with the handlers' writes collected in a
  :class:`~luno_wf._processes._batch.WriteBatch` and each event acked once its write is.

Invariant, whichever is used: an event is acked only after the work it caused has been
written; an error ends the loop with the event un-acked, so it is redelivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import attrs

from .._clock import Clock
from .._engine import Activity
from .._event import Event
from .._metrics import ProcessMetrics, SkipReason
from ..adapter import Ack, BatchReceiver, EventReceiver
from ._batch import WriteBatch
from ._poison import POISON
from ._process import Progress, ensure_not_cancelled

__all__ = [
    "Concurrent",
    "Dispatch",
    "Handler",
    "Intake",
    "Prefetch",
    "Prefetching",
    "batching",
    "consume",
    "one_at_a_time",
    "receive",
]


class Received(Protocol):
    """What the loop reads of an event: engine events and connector events alike."""

    @property
    def id(self) -> int | str:
        """The event's id."""
        ...

    @property
    def created_at(self) -> datetime:
        """When the event was published."""
        ...


E = TypeVar("E", bound=Received)
E_co = TypeVar("E_co", bound=Received, covariant=True)


class Receiver(Protocol[E_co]):
    """A source of events and their acks (an event receiver, a connector consumer)."""

    async def recv(self) -> tuple[E_co, Ack]:
        """The next event and its ack."""
        ...


Handler = Callable[[E], Awaitable[None]]
Dispatch = Callable[[E, Ack], Awaitable[None]]
Prefetch = Callable[[list[str]], Awaitable[None]]


@attrs.frozen(kw_only=True)
class Intake:
    """What a consumer does with each event before handling it.

    Attributes:
        process_name: For log lines.
        clock: The engine's clock (lag waits and lag alerts are on it).
        logger: Where lag alerts go.
        probe: The process's metric series.
        lag: Handle an event only once it is this old.
        lag_alert: Warn about events handled later than this after publication.
        keep: Events it rejects are acked and counted as filtered out.
        activity: The process's activity: the loop marks it waiting while it waits for an
            event, and returns once it is draining.
        set_aside: What to do with a poison event (a handler raised ``PoisonEvent`` or
            ``CorruptRecord``): it is set aside, then acknowledged.

    """

    process_name: str
    clock: Clock
    logger: logging.Logger
    probe: ProcessMetrics
    activity: Activity
    set_aside: Callable[[Any, Exception], Awaitable[None]]
    lag: timedelta = timedelta(0)
    lag_alert: timedelta = timedelta(0)
    keep: Callable[[Any], bool] | None = None


async def receive(receiver: Receiver[E], dispatch: Dispatch[E], intake: Intake) -> None:
    """Receive events until draining, passing each one ``intake`` keeps to ``dispatch``."""
    clock, lag, lag_alert, keep = intake.clock, intake.lag, intake.lag_alert, intake.keep
    probe, activity = intake.probe, intake.activity
    # A Prefetching receiver marks the activity itself, around its one blocking call.
    marks = not isinstance(receiver, Prefetching)
    # The lag alert compares each event with a threshold refreshed every few events rather
    # than reading the clock for each: an alert is at most that many events late.
    alert_before = clock.now() - lag_alert if lag_alert else None
    count = 0
    picked_up = probe.lag_recorder(clock, lag_alert)
    while not activity.draining:
        ensure_not_cancelled()
        if marks:
            activity.waiting = True
        event, ack = await receiver.recv()
        if lag:
            activity.waiting = True  # the event is not handled yet: stop need not wait
            await clock.sleep_until(event.created_at + lag)
        activity.waiting = False
        picked_up(event.created_at)
        if alert_before is not None:
            count += 1
            if count >= 32:
                count = 0
                alert_before = clock.now() - lag_alert
            if event.created_at < alert_before:
                intake.logger.warning(
                    "lag alert [process=%s]: event %s published at %s, processed after %s",
                    intake.process_name,
                    event.id,
                    event.created_at,
                    lag_alert,
                )
        if keep is not None and not keep(event):
            await ack()
            probe.skip(SkipReason.FILTERED_OUT)
            continue
        await dispatch(event, ack)


async def consume(
    receiver: Receiver[E],
    handler: Handler[E],
    intake: Intake,
    progress: Progress,
    *,
    concurrency: int = 1,
    batch: WriteBatch | None = None,
) -> None:
    """Receive and handle events forever (see the module docstring for the dispatchers).

    ``batch`` is used only with ``concurrency`` 1; the caller discards what it holds after
    an error (its events are redelivered with the receiver's).
    """
    if concurrency > 1:
        async with asyncio.TaskGroup() as group:
            pool = Concurrent(handler, concurrency, group, progress, intake)
            await receive(receiver, pool.start, intake)
        return
    if batch is not None:
        await receive(receiver, batching(handler, batch, progress, intake), intake)
        return
    await receive(receiver, one_at_a_time(handler, progress, intake), intake)


def one_at_a_time(handler: Handler[E], progress: Progress, intake: Intake) -> Dispatch[E]:
    """Handle, ack, observe the handler's duration."""
    observe, set_aside = intake.probe.observe, intake.set_aside
    clock = time.perf_counter

    async def dispatch(event: E, ack: Ack) -> None:
        start = clock()
        try:
            await handler(event)
        except POISON as err:
            await set_aside(event, err)
        took = clock() - start
        await ack()
        observe(took)
        progress()

    return dispatch


def batching(
    handler: Handler[E], batch: WriteBatch, progress: Progress, intake: Intake
) -> Dispatch[E]:
    """One event at a time, acking those whose writes wait in ``batch`` when it is flushed."""
    observe, set_aside = intake.probe.observe, intake.set_aside
    clock = time.perf_counter

    async def dispatch(event: E, ack: Ack) -> None:
        queued = len(batch)
        start = clock()
        try:
            await handler(event)
        except POISON as err:
            await set_aside(event, err)
        except BaseException:
            # The writes of the events before this one go through (and those events are
            # acked); this event is redelivered after the restart.
            await batch.flush_quietly()
            raise
        took = clock() - start
        if len(batch) > queued:
            batch.defer_ack(ack)
        else:
            await ack()
        observe(took)
        progress()

    return dispatch


_BATCH = 64


class Prefetching:
    """Hands out a batch receiver's events one by one.

    It prefetches each batch's records (with ``prefetch``), and flushes ``writes`` before it
    waits for the next batch: a write is never held back while the consumer waits.
    """

    def __init__(
        self,
        receiver: BatchReceiver,
        prefetch: Prefetch | None,
        keep: Callable[[Event], bool] | None,
        writes: WriteBatch | None,
        activity: Activity,
    ) -> None:
        self._activity = activity
        self._receiver = receiver
        self._prefetch = prefetch
        self._keep = keep
        self._writes = writes
        self._ready: deque[tuple[Event, Ack]] = deque()

    async def recv(self) -> tuple[Event, Ack]:
        """The next event of the current batch, fetching the next batch when it is done."""
        if not self._ready:
            if self._writes is not None:
                await self._writes.flush()
            self._activity.waiting = True
            batch = await self._receiver.recv_many(_BATCH)
            self._activity.waiting = False
            if self._prefetch is not None:
                keep = self._keep
                # Only the events this consumer keeps (its shard's) need their records.
                await self._prefetch(
                    [event.foreign_id for event, _ in batch if keep is None or keep(event)]
                )
            self._ready.extend(batch)
        return self._ready.popleft()


class Concurrent:
    """Handles up to ``limit`` events at once, never two of the same run.

    Handlers run in a task group owned by the consume loop's task: an error in one cancels
    the others (their events stay un-acked, so they are redelivered) and ends the loop.
    """

    def __init__(
        self,
        handler: Handler[Any],
        limit: int,
        group: asyncio.TaskGroup,
        progress: Progress,
        intake: Intake,
    ) -> None:
        self._set_aside = intake.set_aside
        self._handler = handler
        self._slots = asyncio.Semaphore(limit)
        self._runs: dict[str, asyncio.Event] = {}
        self._group = group
        self._progress = progress
        self._observe = intake.probe.observe

    async def start(self, event: Any, ack: Ack) -> None:
        """Start handling ``event`` once a slot is free."""
        await self._slots.acquire()
        self._group.create_task(self._one(event, ack))

    async def _one(self, event: Any, ack: Ack) -> None:
        try:
            run_id = event.foreign_id
            while (busy := self._runs.get(run_id)) is not None:
                await busy.wait()
            done = self._runs[run_id] = asyncio.Event()
            start = time.perf_counter()
            try:
                await self._handler(event)
            except POISON as err:
                await self._set_aside(event, err)
            finally:
                del self._runs[run_id]
                done.set()
            took = time.perf_counter() - start
            await ack()
            self._observe(took)
            self._progress()
        finally:
            self._slots.release()


Session = Callable[[EventReceiver, Progress], Awaitable[None]]
"""What a consumer does with its receiver while it holds its role."""


def receiver_body(
    streamer_receiver: Callable[[], Awaitable[EventReceiver]], session: Session
) -> Callable[[Progress], Awaitable[None]]:
    """A process body: open a receiver, run ``session`` with it, always close it."""

    async def body(progress: Progress) -> None:
        receiver = await streamer_receiver()
        try:
            await session(receiver, progress)
        finally:
            await receiver.close()

    return body
