"""The role-scheduled process loop and the generic consume loop."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs

from .._event import Event
from .._metrics import SkipReason
from .._options import ExponentialBackoff, backoff_delay
from ..adapter import Ack, BatchReceiver, EventReceiver
from ..errors import RoleLost

if TYPE_CHECKING:
    from .._metrics import ProcessMetrics
    from .._workflow import Workflow
    from ._batch import WriteBatch

__all__ = [
    "Body",
    "ensure_not_cancelled",
    "ProcessSpec",
    "Progress",
    "consume",
    "consumer_process",
    "with_receiver",
]


def ensure_not_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop.

    A library that swallows a cancellation (psycopg_pool's use of ``asyncio.wait_for`` can,
    on Python 3.11) would otherwise leave an idle loop running for ever and ``stop()``
    waiting on it: loops check this before each round.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


Progress = Callable[[], None]
"""Called by a process body after each unit of work, resetting the error back-off."""
Body = Callable[[Progress], Awaitable[None]]


@attrs.define
class ProcessSpec:
    """One background process: it waits for its role, then runs its body under it.

    Invariant: the body runs only while this process holds ``role`` cluster-wide. A body
    error is logged, backed off and retried; cancellation always propagates.
    """

    wf: Workflow[Any, Any]
    name: str
    role: str
    body: Body
    backoff: timedelta | ExponentialBackoff
    counted: bool = True  # part of run()'s readiness handshake (schedules are not)

    async def run(self) -> None:
        """Run until cancelled."""
        from .._workflow import ProcessState

        wf = self.wf
        attempts = 0
        probe = wf.process_metrics(self.name)

        def progress() -> None:
            nonlocal attempts
            attempts = 0

        wf.set_state(self.name, ProcessState.IDLE)
        if self.counted:
            wf.process_started(self.name)
        try:
            while True:
                ensure_not_cancelled()
                wf.set_state(self.name, ProcessState.IDLE)
                try:
                    async with wf.scheduler.await_role(self.role):
                        wf.set_state(self.name, ProcessState.RUNNING)
                        await self.body(progress)
                except RoleLost:
                    wf.logger.warning(
                        "role lost [role=%s], [process=%s]: waiting for it again",
                        self.role,
                        self.name,
                    )
                    continue
                except Exception as err:
                    attempts += 1
                    if probe is not None:
                        probe.errors += 1
                    wf.logger.error(
                        "run error [role=%s], [process=%s]: %s",
                        self.role,
                        self.name,
                        err,
                        exc_info=err if wf.debug else None,
                    )
                    await asyncio.sleep(backoff_delay(self.backoff, attempts))
        finally:
            wf.set_state(self.name, ProcessState.SHUTDOWN)


Handler = Callable[[Event], Awaitable[None]]
Keep = Callable[[Event], bool]


Dispatch = Callable[[Event, Ack], Awaitable[None]]


async def consume(
    wf: Workflow[Any, Any],
    receiver: EventReceiver,
    handler: Handler,
    *,
    process_name: str,
    progress: Progress,
    lag: timedelta = timedelta(0),
    lag_alert: timedelta = timedelta(0),
    keep: Keep | None = None,
    concurrency: int = 1,
    prefetch: Prefetch | None = None,
    batch: WriteBatch | None = None,
) -> None:
    """Receive events forever: wait out ``lag``, skip what ``keep`` rejects, handle, ack.

    A handler error propagates without acking, so the event is redelivered after the
    process restarts (the receiver is closed by the caller). With ``concurrency`` > 1, up to
    that many events are handled at once (never two of the same run), each acked when done.
    With ``prefetch`` and a receiver that hands out batches, ``prefetch`` is called with the
    run ids of each batch before its events are handled. With ``batch`` as well (one event
    at a time), handlers may queue their writes in it: those events are acked when it is
    flushed, which happens before the next batch is awaited and when a handler fails.

    With metrics on, each event sets the process's lag gauge (and lag alert gauge), each
    filtered event counts as skipped, and each handled and acked event observes the
    handler's duration.
    """
    if not isinstance(receiver, BatchReceiver) or concurrency > 1:
        batch = None
    if (prefetch is not None or batch is not None) and isinstance(receiver, BatchReceiver):
        receiver = _Prefetching(receiver, prefetch, keep, batch)
    probe = wf.process_metrics(process_name)
    if batch is not None:
        batch.active = True
        try:
            await _receive(
                wf,
                receiver,
                _batching(wf, handler, batch, progress, probe),
                process_name,
                lag,
                lag_alert,
                keep,
                probe,
            )
        finally:
            batch.active = False
            batch.discard()  # what a failed flush left: redelivered with the receiver's events
        return
    if concurrency <= 1:
        if probe is None:

            async def one_at_a_time(event: Event, ack: Ack) -> None:
                await handler(event)
                await ack()
                progress()

        else:
            observe = probe.observe
            clock = time.perf_counter

            async def one_at_a_time(event: Event, ack: Ack) -> None:
                start = clock()
                await handler(event)
                took = clock() - start
                await ack()
                observe(took)
                progress()

        await _receive(wf, receiver, one_at_a_time, process_name, lag, lag_alert, keep, probe)
        return
    async with asyncio.TaskGroup() as group:
        pool = _Concurrent(handler, concurrency, group, progress, probe)
        await _receive(wf, receiver, pool.start, process_name, lag, lag_alert, keep, probe)


def _batching(
    wf: Workflow[Any, Any],
    handler: Handler,
    batch: WriteBatch,
    progress: Progress,
    probe: ProcessMetrics | None,
) -> Dispatch:
    """One event at a time, acking those whose writes wait in ``batch`` when it is flushed."""
    observe = None if probe is None else probe.observe
    clock = time.perf_counter

    async def dispatch(event: Event, ack: Ack) -> None:
        queued = len(batch)
        start = clock()
        try:
            await handler(event)
        except BaseException:
            # The writes of the events before this one go through (and those events are
            # acked); this event is redelivered after the restart.
            try:
                await batch.flush()
            except Exception as err:
                wf.logger.warning(
                    "could not write a batch's results while stopping on an error (their "
                    "events are redelivered): %s",
                    err,
                )
            raise
        took = clock() - start
        if len(batch) > queued:
            batch.defer_ack(ack)
        else:
            await ack()
        if observe is not None:
            observe(took)
        progress()

    return dispatch


async def _receive(
    wf: Workflow[Any, Any],
    receiver: EventReceiver,
    dispatch: Dispatch,
    process_name: str,
    lag: timedelta,
    lag_alert: timedelta,
    keep: Keep | None,
    probe: ProcessMetrics | None,
) -> None:
    clock = wf.clock
    # The lag alert compares each event with a threshold refreshed every few events rather
    # than reading the clock for each: an alert is at most that many events late.
    alert_before = clock.now() - lag_alert if lag_alert else None
    count = 0
    picked_up = None if probe is None else probe.lag_recorder(clock, lag_alert)
    while True:
        ensure_not_cancelled()
        event, ack = await receiver.recv()
        if lag:
            await clock.sleep_until(event.created_at + lag)
        if picked_up is not None:
            picked_up(event.created_at)
        if alert_before is not None:
            count += 1
            if count >= 32:
                count = 0
                alert_before = clock.now() - lag_alert
            if event.created_at < alert_before:
                wf.logger.warning(
                    "lag alert [process=%s]: event %s published at %s, processed after %s",
                    process_name,
                    event.id,
                    event.created_at,
                    lag_alert,
                )
        if keep is not None and not keep(event):
            await ack()
            if probe is not None:
                probe.skip(SkipReason.FILTERED_OUT)
            continue
        await dispatch(event, ack)


Prefetch = Callable[[list[str]], Awaitable[None]]

_BATCH = 64


class _Prefetching:
    """Hands out a batch receiver's events one by one.

    It prefetches each batch's records (with ``prefetch``), and flushes ``writes`` before it
    waits for the next batch.
    """

    def __init__(
        self,
        receiver: BatchReceiver,
        prefetch: Prefetch | None,
        keep: Keep | None,
        writes: WriteBatch | None,
    ) -> None:
        self._receiver = receiver
        self._prefetch = prefetch
        self._keep = keep
        self._writes = writes
        self._ready: deque[tuple[Event, Ack]] = deque()

    async def recv(self) -> tuple[Event, Ack]:
        if not self._ready:
            if self._writes is not None:
                await self._writes.flush()  # never wait for events with writes held back
            batch = await self._receiver.recv_many(_BATCH)
            if self._prefetch is not None:
                keep = self._keep
                # Only the events this consumer keeps (its shard's) need their records.
                await self._prefetch(
                    [event.foreign_id for event, _ in batch if keep is None or keep(event)]
                )
            self._ready.extend(batch)
        return self._ready.popleft()

    async def close(self) -> None:  # pragma: no cover - the caller closes the real receiver
        return None


class _Concurrent:
    """Handles up to ``limit`` events at once, never two of the same run.

    Handlers run in a task group owned by the consume loop's task: an error in one cancels
    the others (their events stay un-acked, so they are redelivered) and ends the loop.
    """

    def __init__(
        self,
        handler: Handler,
        limit: int,
        group: asyncio.TaskGroup,
        progress: Progress,
        probe: ProcessMetrics | None,
    ) -> None:
        self._handler = handler
        self._slots = asyncio.Semaphore(limit)
        self._runs: dict[str, asyncio.Event] = {}
        self._group = group
        self._progress = progress
        self._observe = None if probe is None else probe.observe

    async def start(self, event: Event, ack: Ack) -> None:
        await self._slots.acquire()
        self._group.create_task(self._one(event, ack))

    async def _one(self, event: Event, ack: Ack) -> None:
        try:
            run_id = event.foreign_id
            while (busy := self._runs.get(run_id)) is not None:
                await busy.wait()
            done = self._runs[run_id] = asyncio.Event()
            start = time.perf_counter()
            try:
                await self._handler(event)
            finally:
                del self._runs[run_id]
                done.set()
            took = time.perf_counter() - start
            await ack()
            if self._observe is not None:
                self._observe(took)
            self._progress()
        finally:
            self._slots.release()


async def with_receiver(
    wf: Workflow[Any, Any],
    topic: str,
    name: str,
    poll_frequency: timedelta,
    work: Callable[[EventReceiver], Awaitable[None]],
    *,
    stream_from_latest: bool = False,
) -> None:
    """Open a receiver, run ``work`` with it, and always close it."""
    receiver = await wf.streamer.new_receiver(
        topic, name, stream_from_latest=stream_from_latest, poll_frequency=poll_frequency
    )
    try:
        await work(receiver)
    finally:
        await receiver.close()


def consumer_process(
    wf: Workflow[Any, Any],
    *,
    name: str,
    role: str,
    topic: str,
    handle: Handler,
    polling: timedelta,
    backoff: timedelta | ExponentialBackoff,
    lag: timedelta = timedelta(0),
    lag_alert: timedelta = timedelta(0),
    keep: Keep | None = None,
    concurrency: int = 1,
    prefetch: Prefetch | None = None,
    batch: WriteBatch | None = None,
) -> ProcessSpec:
    """A process that consumes ``topic`` under ``role`` with ``handle``.

    Each time it takes its role it opens a receiver named after the role (so it resumes at
    the last acked event), consumes until an error or cancellation, and closes the receiver.
    """

    def body(progress: Progress) -> Awaitable[None]:
        return with_receiver(
            wf,
            topic,
            role,
            polling,
            lambda receiver: consume(
                wf,
                receiver,
                handle,
                process_name=name,
                progress=progress,
                lag=lag,
                lag_alert=lag_alert,
                keep=keep,
                concurrency=concurrency,
                prefetch=prefetch,
                batch=batch,
            ),
        )

    return ProcessSpec(wf, name, role, body, backoff)
