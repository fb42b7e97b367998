"""The private engine: what a built workflow's machinery shares.

:class:`Workflow` is the public facade; everything that runs (the background processes,
callbacks, ``await_status``, the testing helpers) works through an :class:`Engine`, or
through the narrower values it hands out. The engine owns:

- the frozen :class:`~luno_wf._definition.Definition` and the build-time
  :class:`~luno_wf._definition.Settings`;
- the adapters, the clock, the codec, the logger and the tracer (:class:`RunTracer`,
  which starts the OpenTelemetry span of each unit of work);
- the write path (:meth:`Engine.write`): one compare-and-set write of a record and its
  outbox row, then the in-process consequences of it (error counts dropped for a run that
  stopped, the run-state metric, the outbox publisher woken, ``await_status`` waiters fed);
- small named components for shared state: :class:`ErrorCounter`, :class:`RunWatches`,
  :class:`OutboxWake`, :class:`ProcessStates`.

Nothing here imports the facade or the processes, so the import graph has no cycle:
``_workflow`` -> ``_processes`` -> ``_engine``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Generic

from ._actor import API
from ._clock import Clock
from ._converter import Codec
from ._definition import Definition, Settings
from ._ids import check_foreign_id
from ._metrics import MetricsSink, ProcessMetrics
from ._options import Options, Resolved
from ._processstate import ProcessState
from ._record import Record
from ._run import Run, RunStateController, TypedRecord
from ._runstate import RunState
from ._tracing import RunTracer
from ._types import S, T
from .adapter import (
    DirectEvents,
    EventStreamer,
    HistoryStore,
    RecordStore,
    RoleScheduler,
    TimeoutStore,
)
from .errors import UnknownStatus

__all__ = [
    "Activity",
    "Engine",
    "ErrorCounter",
    "OutboxWake",
    "ProcessStates",
    "RunLocks",
    "RunWatches",
    "Watch",
]

_ACTIVE = frozenset((RunState.INITIATED, RunState.RUNNING))


class ErrorCounter:
    """Consecutive errors of each run in each process, keyed ``(process name, run id)``.

    A count grows with each error of the run in that process and is cleared by a success
    there; it decides when a run is paused (``pause_after_err_count``). Counts of a run
    that stops (finished, paused, cancelled, deleted) are dropped: no process will succeed
    on it to clear them.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def __bool__(self) -> bool:
        return bool(self._counts)

    def count(self, process_name: str, run_id: str) -> int:
        """Count one more error; returns the count."""
        key = (process_name, run_id)
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count

    def clear(self, process_name: str, run_id: str) -> None:
        """Forget the run's errors in that process (after a success)."""
        self._counts.pop((process_name, run_id), None)

    def drop_run(self, run_id: str) -> None:
        """Forget the run's errors in every process."""
        for key in [key for key in self._counts if key[1] == run_id]:
            del self._counts[key]

    def snapshot(self) -> dict[tuple[str, str], int]:
        """A copy of every count."""
        return dict(self._counts)


class Watch:
    """Records this process wrote for one run, for ``await_status``."""

    __slots__ = ("changed", "records")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.changed = asyncio.Event()


class RunWatches:
    """The ``await_status`` waiters of each run, fed every record this process writes.

    Writes made by other processes are not seen here; waiters also poll the store.
    """

    __slots__ = ("watched",)

    def __init__(self) -> None:
        self.watched: dict[str, list[Watch]] = {}
        """The watches of each watched run (read by the write path)."""

    def __len__(self) -> int:
        """How many runs are watched."""
        return len(self.watched)

    @contextlib.contextmanager
    def watch(self, run_id: str) -> Iterator[Watch]:
        """A watch on ``run_id`` for the duration of the block."""
        watch = Watch()
        self.watched.setdefault(run_id, []).append(watch)
        try:
            yield watch
        finally:
            watches = self.watched[run_id]
            watches.remove(watch)
            if not watches:
                del self.watched[run_id]

    def notify(self, record: Record) -> None:
        """Hand ``record``, just written, to the run's watches."""
        watches = self.watched.get(record.run_id)
        if watches:
            for watch in watches:
                watch.records.append(record)
                watch.changed.set()


class RunLocks:
    """Locks on runs within this process, one per run while in use.

    Compensation holds a run's lock, so two ``compensate`` calls of one run in this process
    run one after the other (across processes the compare-and-set refuses the loser).
    """

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # run id -> (lock, users)

    def __len__(self) -> int:
        """How many runs have a lock in use."""
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, run_id: str) -> AsyncIterator[None]:
        """Hold the lock of ``run_id`` for the duration of the block."""
        lock, users = self._locks.get(run_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[run_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[run_id]
            if users == 1:
                del self._locks[run_id]
            else:
                self._locks[run_id] = (lock, users - 1)


class OutboxWake:
    """Wakes the outbox publisher as soon as this process has written a record.

    Invariant: :meth:`clear` is called before the publisher lists the outbox, so a write
    that lands after the listing sets the flag again and the next :meth:`wait` returns at
    once: no row waits for a polling interval when its write was made in this process.
    """

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def set(self) -> None:
        """Note a write."""
        self.event.set()

    def clear(self) -> None:
        """Forget earlier writes (the publisher is about to list the outbox)."""
        self.event.clear()

    async def wait(self, seconds: float) -> None:
        """Wait for a write, or ``seconds`` (writes made by other processes)."""
        try:
            async with asyncio.timeout(seconds):
                await self.event.wait()
        except TimeoutError:
            pass


class Activity:
    """Whether one process is waiting (for its role, an event, a poll) or busy.

    ``stop()`` drains: it sets ``draining`` on every process, cancels those that are
    waiting at once, and lets busy ones finish their unit of work; a process checks
    ``draining`` before it waits again and then returns, releasing its role.
    """

    __slots__ = ("draining", "waiting")

    def __init__(self) -> None:
        self.waiting = True
        self.draining = False


class ProcessStates:
    """Each background process's state, activity and metric series, and readiness.

    ``expect`` names how many processes must start before :attr:`ready` is set; each
    process calls :meth:`started` once it runs.
    """

    def __init__(self, workflow_name: str, metrics: MetricsSink) -> None:
        self._workflow_name = workflow_name
        self._metrics = metrics
        self._states: dict[str, ProcessState] = {}
        self._probes: dict[str, ProcessMetrics] = {}
        self._activities: dict[str, Activity] = {}
        self._draining = False
        self._expected = 0
        self._started = 0
        self.ready = asyncio.Event()

    def expect(self, names: list[str]) -> None:
        """Expect the processes ``names`` to start; each is IDLE until it does."""
        self._expected = len(names)
        self._started = 0
        for name in names:
            self.set(name, ProcessState.IDLE)
        if not names:
            self.ready.set()

    def started(self) -> None:
        """Called once by each expected process when it runs."""
        self._started += 1
        if self._started >= self._expected:
            self.ready.set()

    def set(self, name: str, state: ProcessState) -> None:
        """Record (and report) a process's state."""
        self._states[name] = state
        self.probe(name).state = state

    def forget(self, name: str) -> None:
        """Drop a process that has ended for good (a schedule that was cancelled)."""
        self._states.pop(name, None)

    def shut_down(self) -> None:
        """Mark every process SHUTDOWN."""
        for name in list(self._states):
            self.set(name, ProcessState.SHUTDOWN)

    def snapshot(self) -> dict[str, ProcessState]:
        """Each process's name and state."""
        return dict(self._states)

    def activity(self, name: str) -> Activity:
        """Whether process ``name`` is waiting or busy (made on first use)."""
        activity = self._activities.get(name)
        if activity is None:
            activity = self._activities[name] = Activity()
            activity.draining = self._draining
        return activity

    def drain(self) -> None:
        """Ask every process to finish its unit of work and return."""
        self._draining = True
        for activity in self._activities.values():
            activity.draining = True

    def probe(self, name: str) -> ProcessMetrics:
        """The metric series of process ``name`` (series nobody reads with metrics off)."""
        probe = self._probes.get(name)
        if probe is None:
            probe = self._probes[name] = self._metrics.process(self._workflow_name, name)
        return probe


class Engine(Generic[T, S]):
    """The running machinery of one built workflow (see the module docstring)."""

    def __init__(
        self,
        definition: Definition[T, S],
        settings: Settings[T],
        *,
        streamer: EventStreamer,
        store: RecordStore,
        scheduler: RoleScheduler,
        timeout_store: TimeoutStore | None,
        clock: Clock,
        codec: Codec,
        logger: logging.Logger,
        metrics: MetricsSink,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.name = definition.name
        self.streamer = streamer
        self.store = store
        self.scheduler = scheduler
        self.timeout_store = timeout_store
        # Whether the store writes this workflow's events to the streamer itself: asked
        # once, here, so that a process that only triggers runs writes them so too.
        self.direct_events = isinstance(store, DirectEvents) and store.publishes_events(
            definition.name, streamer
        )
        self.clock = clock
        self.codec = codec
        self.logger = logger
        self.debug = settings.debug
        self.defaults = Resolved.of(Options(), settings.default_options)
        self.errors = ErrorCounter()
        self.watches = RunWatches()
        self.outbox_wake = OutboxWake()
        self.run_locks = RunLocks()
        self.history_store = store if isinstance(store, HistoryStore) else None
        """The store, if it keeps history (whatever ``build(history=...)`` said)."""
        if self.history_store is not None:
            self.history_store.configure_history(
                definition.name, enabled=settings.history, objects=settings.history_objects
            )
        self._members = definition.members
        self._wake = self.outbox_wake.event
        self._watched = self.watches.watched
        self.metrics = metrics
        self.states = ProcessStates(definition.name, metrics)
        self.tracing = RunTracer(definition.name, settings.tracing)
        # workflow_run_state_changes, [previous][current], bumped by written().
        self._run_state_changes = metrics.run_state_changes(definition.name)

    def resolve(self, options: Options) -> Resolved:
        """Process options over the workflow defaults."""
        return Resolved.of(options, self.settings.default_options)

    def probe(self, process_name: str) -> ProcessMetrics:
        """The metric series of a process."""
        return self.states.probe(process_name)

    def debug_log(self, message: str, **meta: object) -> None:
        """Log a debug line when debug mode is on."""
        if self.debug:
            self.logger.debug("%s %s", message, meta)

    # -- the write path -------------------------------------------------------------------

    async def write(self, record: Record, previous: RunState) -> None:
        """Store a record with its outbox row (one compare-and-set), then :meth:`written`.

        ``previous`` is the run state the run was in (UNKNOWN for a new run). The record
        carries the trace id of the span it is written in, which notes it
        (:meth:`RunTracer.writing`).
        """
        record = self.tracing.writing(record)
        await self.store.store(record)
        self.written(record, previous)

    def written(self, record: Record, previous: RunState) -> None:
        """Account for a write the store has taken: errors, metrics, publisher, waiters."""
        # The hot path of every write: the cheap tests first, no call that can be skipped.
        if record.run_state not in _ACTIVE and self.errors:
            self.errors.drop_run(record.run_id)
        self._run_state_changes[previous][record.run_state] += 1
        self._wake.set()
        if record.run_id in self._watched:
            self.watches.notify(record)

    def controller(self, record: Record, actor: str) -> RunStateController:
        """A run-state controller writing through this engine as ``actor``."""
        return RunStateController(record, self.write, self.clock.now, actor)

    # -- typed views ----------------------------------------------------------------------

    def status_of(self, record: Record) -> S:
        """The record's status as a member of the workflow's enum."""
        try:
            return self._members[record.status]
        except KeyError:
            raise UnknownStatus(
                f"stored status {record.status} is not a member of "
                f"{self.definition.status_type.__name__}",
                workflow_name=self.name,
                run_id=record.run_id,
                status=record.status,
            ) from None

    def build_run(self, record: Record, actor: str = API) -> Run[T, S]:
        """Decode a record into a Run; INITIATED is treated as RUNNING.

        The run's pause and cancel are written as ``actor``.
        """
        if record.run_state == RunState.INITIATED:
            record = Record(
                workflow_name=record.workflow_name,
                foreign_id=record.foreign_id,
                run_id=record.run_id,
                run_state=RunState.RUNNING,
                status=record.status,
                object=record.object,
                created_at=record.created_at,
                updated_at=record.updated_at,
                meta=record.meta,
            )
        obj = self.codec.decode(record.object)
        return Run(record, self.status_of(record), obj, self.controller(record, actor))

    def typed(self, record: Record) -> TypedRecord[T, S]:
        """Decode a record into a TypedRecord."""
        return TypedRecord(record, self.status_of(record), self.codec.decode(record.object))

    # -- argument checks ------------------------------------------------------------------

    def check_status(self, status: object) -> S:
        """``status`` if it is a configured status of this workflow, else raise."""
        status_type = self.definition.status_type
        if not isinstance(status, status_type):
            raise UnknownStatus(
                f"status must be a member of {status_type.__name__}, got {status!r}",
                workflow_name=self.name,
            )
        if not self.definition.graph.is_valid(int(status)):
            raise UnknownStatus(
                f"status provided is not configured for workflow: {status!r}",
                workflow_name=self.name,
                status=int(status),
            )
        return status

    @staticmethod
    def check_foreign_id(foreign_id: object) -> str:
        """``foreign_id`` if every store can keep it, else raise ``InvalidForeignID``."""
        return check_foreign_id(foreign_id)
