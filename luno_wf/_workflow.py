"""The :class:`Workflow`: a built workflow, its background processes and its API."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta, tzinfo
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Protocol

import attrs
import cattrs

from ._clock import Clock, SystemClock
from ._converter import Codec
from ._lookup import lookup_run
from ._options import Options, Resolved
from ._outbox import new_uuid4
from ._record import Meta, Record
from ._run import Run, RunStateController, TypedRecord
from ._runstate import RunState
from ._types import S, T
from .adapter import EventStreamer, RecordStore, RoleScheduler, TimeoutStore
from .errors import (
    RecordNotFound,
    UnknownStatus,
    WorkflowError,
    WorkflowNotRunning,
)

if TYPE_CHECKING:
    from ._await import Watch
    from ._builder import Builder
    from ._metrics import Metrics, ProcessMetrics
    from ._processes._loop import ProcessSpec

__all__ = ["API", "ProcessState", "Workflow"]


class ProcessState(enum.IntEnum):
    """The state of one background process (luno's values)."""

    UNKNOWN = 0
    SHUTDOWN = 1
    """The process has exited."""
    RUNNING = 2
    """The process holds its role and is working."""
    IDLE = 3
    """The process is waiting for its role."""


class API(Protocol[T, S]):
    """What connector functions receive: the workflow's public verbs."""

    @property
    def name(self) -> str:
        """The workflow's name."""
        ...

    async def trigger(
        self, foreign_id: str, *, initial_value: T | None = None, start_at: S | None = None
    ) -> str:
        """Start a run; see :meth:`Workflow.trigger`."""
        ...

    async def callback(self, foreign_id: str, status: S, payload: bytes) -> None:
        """Deliver a callback; see :meth:`Workflow.callback`."""
        ...

    async def await_status(
        self,
        foreign_id: str,
        run_id: str,
        status: S,
        *,
        poll_interval: timedelta = ...,
        timeout: timedelta | None = ...,
    ) -> Run[T, S]:
        """Wait for a status; see :meth:`Workflow.await_status`."""
        ...


class Workflow(Generic[T, S]):
    """A built workflow. Start it with ``async with wf:`` (or :meth:`run` / :meth:`stop`).

    While running, background processes (one per step shard, plus the outbox publisher,
    hooks, timeouts, connectors, deletion and paused-run retry) each work under their own
    role, so many processes can run the same workflow and every piece of work happens in
    exactly one place.
    """

    def __init__(
        self,
        builder: Builder[T, S],
        *,
        streamer: EventStreamer,
        store: RecordStore,
        scheduler: RoleScheduler,
        timeout_store: TimeoutStore | None,
        clock: Clock | None,
        converter: cattrs.Converter | None,
        default_options: Options,
        pause_retry: timedelta | None,
        custom_delete: Callable[[T], Awaitable[T]] | None,
        outbox: bool,
        logger: logging.Logger | None,
        debug: bool,
        metrics: Metrics | None,
    ) -> None:
        self._name = builder.name
        self.object_type = builder.object_type
        self.status_type = builder.status_type
        self.graph = builder.graph
        self.steps = dict(builder.steps)
        self.callbacks = {k: list(v) for k, v in builder.callbacks.items()}
        self.timeouts = {k: list(v) for k, v in builder.timeouts.items()}
        self.timeout_options = dict(builder.timeout_options)
        self.connectors = dict(builder.connectors)
        self.hooks = dict(builder.hooks)
        self.streamer = streamer
        self.store = store
        self.scheduler = scheduler
        self.timeout_store = timeout_store
        self.clock: Clock = clock or SystemClock()
        self.codec = Codec(builder.object_type, converter)
        self.default_options = default_options
        self.defaults = Resolved.of(Options(), default_options)
        self.pause_retry = pause_retry
        self.custom_delete = custom_delete
        self.outbox_enabled = outbox
        self.logger = logger or logging.getLogger("luno_wf")
        self.debug = debug
        self.default_start = self.status_type(self.graph.starting()[0])
        # Looked up on every step: plain dicts beat the enum's own lookup.
        self.members: dict[int, S] = {int(m): m for m in builder.status_type}
        self.names: dict[int, str] = {int(m): m.name for m in builder.status_type}
        self.allowed: dict[int, frozenset[int]] = {
            n: frozenset(self.graph.transitions(n)) for n in self.graph.nodes()
        }
        self.terminal = frozenset(self.graph.terminal())
        self.error_counts: dict[tuple[str, str], int] = {}
        self.outbox_wake = asyncio.Event()
        self.watches: dict[str, list[Watch]] = {}
        self._states: dict[str, ProcessState] = {}
        self.metrics = metrics
        self._process_metrics: dict[str, ProcessMetrics] = {}
        # workflow_run_state_changes counts, [previous][current], bumped inline by write().
        self._run_state_changes: list[list[int]] | None = (
            None if metrics is None else metrics.run_state_changes(self._name)
        )
        self._processes: list[ProcessSpec] = []
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._started = 0
        self._stopped = False

    # -- identity -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self._name

    def __repr__(self) -> str:
        return f"<Workflow {self._name!r} running={self.running}>"

    @property
    def running(self) -> bool:
        """Whether :meth:`run` was called and :meth:`stop` was not."""
        return self._task is not None and not self._stopped

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        """Start every background process (idempotent; needs a running event loop).

        ``await`` :meth:`wait_ready` (or use ``async with``) to know they have all started.
        """
        if self._stopped:
            raise WorkflowError(
                "a stopped workflow cannot be run again; build a new one", workflow_name=self._name
            )
        if self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "Workflow.run() needs a running event loop: call it from async code"
            ) from None
        from ._processes import all_processes

        self._processes = all_processes(self)
        self._ready = asyncio.Event()
        for spec in self._processes:
            self.set_state(spec.name, ProcessState.IDLE)
        if not self._processes:
            self._ready.set()
        self._task = loop.create_task(self._supervise(), name=f"luno_wf:{self._name}")

    async def wait_ready(self) -> None:
        """Wait until every background process has started."""
        if self._ready is None:
            raise WorkflowNotRunning(workflow_name=self._name)
        ready = asyncio.ensure_future(self._ready.wait())
        assert self._task is not None
        done, _ = await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            self._task.result()  # re-raise what ended the supervisor

    def process_started(self, name: str) -> None:
        """Called by each process once it runs (internal)."""
        self._started += 1
        if self._ready is not None and self._started >= len(self._processes):
            self._ready.set()

    async def _supervise(self) -> None:
        async with asyncio.TaskGroup() as group:
            for spec in self._processes:
                group.create_task(spec.run(), name=f"luno_wf:{self._name}:{spec.name}")

    async def stop(self) -> None:
        """Stop every background process and wait for them to exit.

        Work in flight is cancelled at its next ``await``: a write either happened whole or
        not at all, and an event whose work was not finished is redelivered to the next
        process that takes the role.
        """
        if self._task is None or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        task = self._task
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        for name in list(self._states):
            self.set_state(name, ProcessState.SHUTDOWN)

    async def __aenter__(self) -> Workflow[T, S]:
        self.run()
        await self.wait_ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def states(self) -> dict[str, ProcessState]:
        """Each background process's name and state."""
        return dict(self._states)

    def set_state(self, name: str, state: ProcessState) -> None:
        """Record a process's state, and report it (internal)."""
        self._states[name] = state
        probe = self.process_metrics(name)
        if probe is not None:
            probe.state = state

    def process_metrics(self, name: str) -> ProcessMetrics | None:
        """The metric series of process ``name``, None with metrics off (internal)."""
        if self.metrics is None:
            return None
        probe = self._process_metrics.get(name)
        if probe is None:
            probe = self._process_metrics[name] = self.metrics.process(self._name, name)
        return probe

    # -- writes -------------------------------------------------------------------------

    async def write(self, record: Record, previous: RunState) -> None:
        """Store a record (with its outbox row) and wake the publisher and waiters (internal).

        ``previous`` is the run state the run was in (UNKNOWN for a new run), for the
        ``workflow_run_state_changes`` metric, counted once the store has taken the write.
        """
        await self.store.store(record)
        self.written(record, previous)

    def written(self, record: Record, previous: RunState) -> None:
        """Count a stored write, and wake the publisher and the run's waiters (internal).

        A run that is no longer running (finished, cancelled, paused, deleted) has its
        error counts dropped: no process will succeed on it to clear them.
        """
        if self.error_counts and record.run_state not in _ACTIVE:
            run_id = record.run_id
            for key in [key for key in self.error_counts if key[1] == run_id]:
                del self.error_counts[key]
        changes = self._run_state_changes
        if changes is not None:
            changes[previous][record.run_state] += 1
        self.outbox_wake.set()
        watches = self.watches.get(record.run_id)
        if watches:
            for watch in watches:
                watch.records.append(record)
                watch.changed.set()

    def controller(self, record: Record) -> RunStateController:
        """A run-state controller writing through this workflow (internal)."""
        return RunStateController(record, self.write, self.clock.now)

    def status_of(self, record: Record) -> S:
        """The record's status as a member of the workflow's enum (internal)."""
        try:
            return self.members[record.status]
        except KeyError:
            raise UnknownStatus(
                f"stored status {record.status} is not a member of {self.status_type.__name__}",
                workflow_name=self._name,
                run_id=record.run_id,
                status=record.status,
            ) from None

    def build_run(self, record: Record) -> Run[T, S]:
        """Decode a record into a Run; INITIATED is treated as RUNNING (internal)."""
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
        return Run(record, self.status_of(record), obj, self.controller(record))

    def typed(self, record: Record) -> TypedRecord[T, S]:
        """Decode a record into a TypedRecord (internal)."""
        return TypedRecord(record, self.status_of(record), self.codec.decode(record.object))

    def debug_log(self, message: str, **meta: object) -> None:
        """Log a debug line when debug mode is on (internal)."""
        if self.debug:
            self.logger.debug("%s %s", message, meta)

    # -- API ----------------------------------------------------------------------------

    def check_status(self, status: object) -> S:
        """``status`` if it is a configured status of this workflow, else raise (internal)."""
        if not isinstance(status, self.status_type):
            raise UnknownStatus(
                f"status must be a member of {self.status_type.__name__}, got {status!r}",
                workflow_name=self._name,
            )
        if not self.graph.is_valid(int(status)):
            raise UnknownStatus(
                f"status provided is not configured for workflow: {status!r}",
                workflow_name=self._name,
                status=int(status),
            )
        return status

    @staticmethod
    def check_foreign_id(foreign_id: object) -> str:
        """``foreign_id`` if it is a non-empty string, else raise (internal)."""
        if not isinstance(foreign_id, str) or not foreign_id:
            raise WorkflowError(f"foreign_id must be a non-empty string, got {foreign_id!r}")
        return foreign_id

    async def trigger(
        self, foreign_id: str, *, initial_value: T | None = None, start_at: S | None = None
    ) -> str:
        """Start a run of ``foreign_id`` and return its run id.

        Args:
            foreign_id: The caller's business key; one unfinished run per foreign id.
            initial_value: The object the run starts with (default: ``object_type()``).
            start_at: The status to start in (default: the first starting point).

        Raises:
            WorkflowNotRunning: :meth:`run` was not called.
            WorkflowInProgress: The foreign id has an unfinished run.
            UnknownStatus: ``start_at`` is not a status of this workflow, or is terminal.

        """
        if not self.running:
            raise WorkflowNotRunning(
                "trigger failed: workflow is not running", workflow_name=self._name
            )
        self.check_foreign_id(foreign_id)
        start = self.default_start if start_at is None else self.check_status(start_at)
        if self.graph.is_terminal(int(start)):
            raise UnknownStatus(
                f"cannot start a run at terminal status {start!r}: nothing would ever move it",
                workflow_name=self._name,
                foreign_id=foreign_id,
                status=int(start),
            )
        if initial_value is None:
            try:
                initial_value = self.object_type()
            except TypeError as err:
                raise TypeError(
                    f"{self.object_type.__name__}() needs arguments; pass initial_value= to "
                    f"trigger: {err}"
                ) from None
        elif isinstance(self.object_type, type) and not isinstance(initial_value, self.object_type):
            raise TypeError(
                f"initial_value must be a {self.object_type.__name__}, got "
                f"{type(initial_value).__name__}"
            )
        return await self._start(foreign_id, start, initial_value, _trace_origin())

    async def _start(self, foreign_id: str, start: S, initial_value: T, origin: str) -> str:
        now = self.clock.now()
        run_id = new_uuid4()
        record = Record(
            workflow_name=self._name,
            foreign_id=foreign_id,
            run_id=run_id,
            run_state=RunState.INITIATED,
            status=int(start),
            object=self.codec.encode(initial_value),
            created_at=now,
            updated_at=now,
            meta=Meta(status_description=start.name, version=1, trace_origin=origin),
        )
        await self.write(record, RunState.UNKNOWN)
        return run_id

    async def trigger_scheduled(self, foreign_id: str, initial_value: T | None, origin: str) -> str:
        """Trigger a run for a schedule's tick, marked in its trace origin (internal)."""
        value = self.object_type() if initial_value is None else initial_value
        return await self._start(foreign_id, self.default_start, value, origin)

    async def schedule(
        self,
        foreign_id: str,
        cron_spec: str,
        *,
        initial_value: T | None = None,
        filter: Callable[[], Awaitable[bool]] | None = None,
        timezone: tzinfo = UTC,
    ) -> None:
        """Trigger ``foreign_id`` on every tick of ``cron_spec`` until cancelled or stopped.

        One process in the cluster fires each tick (the schedule holds a role); the next tick
        follows the last one fired, read back from the store, so a restart neither skips
        nor repeats a tick. A tick whose run would overlap an unfinished one is skipped.

        Args:
            foreign_id: The foreign id each run is triggered for.
            cron_spec: A cron expression (croniter syntax, e.g. ``"0 9 * * 1-5"``) or
                ``@hourly``/``@daily``/... .
            initial_value: The object each run starts with.
            filter: ``async () -> bool`` asked at each tick; False skips the tick.
            timezone: The zone the expression is read in (default UTC).

        Raises:
            WorkflowNotRunning: :meth:`run` was not called.
            ValueError: ``cron_spec`` is not a valid cron expression.

        """
        from croniter import croniter

        from ._processes.schedule import make_schedule

        if not self.running or self._task is None:
            raise WorkflowNotRunning(
                "schedule failed: workflow is not running", workflow_name=self._name
            )
        self.check_foreign_id(foreign_id)
        if not isinstance(cron_spec, str) or not croniter.is_valid(cron_spec):
            raise ValueError(f"invalid cron expression {cron_spec!r}")
        spec = make_schedule(
            self,
            foreign_id,
            cron_spec,
            initial_value=initial_value,
            filter=filter,
            timezone=timezone,
        )
        process = asyncio.ensure_future(spec.run())
        try:
            await asyncio.wait({process, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            process.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await process
            self._states.pop(spec.name, None)

    async def lookup(self, run_id: str) -> TypedRecord[T, S]:
        """The run ``run_id``; raises :class:`~luno_wf.errors.RecordNotFound`."""
        return self.typed(await lookup_run(self.store, self._name, run_id))

    async def latest(self, foreign_id: str) -> TypedRecord[T, S]:
        """The newest run of ``foreign_id``; raises :class:`~luno_wf.errors.RecordNotFound`."""
        self.check_foreign_id(foreign_id)
        return self.typed(await self.store.latest(self._name, foreign_id))

    async def _control(self, run_id: str, target: RunState, reason: str) -> None:
        record = await lookup_run(self.store, self._name, run_id)
        if record.workflow_name != self._name:
            raise RecordNotFound(
                f"run belongs to workflow {record.workflow_name!r}",
                workflow_name=self._name,
                run_id=run_id,
            )
        if record.run_state == RunState.INITIATED:
            # As when a step processes it, a run not yet picked up counts as running: so a
            # just-triggered run can be cancelled too.
            record = attrs.evolve(record, run_state=RunState.RUNNING)
        await self.controller(record).transition(target, reason)

    async def pause(self, run_id: str, reason: str) -> None:
        """Pause a run; its steps stop until :meth:`resume` (or the paused-run retry)."""
        await self._control(run_id, RunState.PAUSED, reason)

    async def resume(self, run_id: str) -> None:
        """Resume a paused run; its current status is processed again."""
        await self._control(run_id, RunState.RUNNING, "")

    async def cancel(self, run_id: str, reason: str) -> None:
        """Cancel a run for good."""
        await self._control(run_id, RunState.CANCELLED, reason)

    async def delete_data(self, run_id: str, reason: str) -> None:
        """Request deletion of a finished run's data; the record stays, its object is replaced."""
        await self._control(run_id, RunState.REQUESTED_DATA_DELETED, reason)

    async def callback(self, foreign_id: str, status: S, payload: bytes) -> None:
        """Deliver ``payload`` to the callbacks of ``status`` for the run of ``foreign_id``.

        Raises:
            CallbackNotAccepted: No callback on that status, or the foreign id's latest run is
                not waiting in that status (or is paused, cancelled or deleted).
            RecordNotFound: The foreign id has no run.

        """
        from ._processes.callback import deliver_callback

        await deliver_callback(self, self.check_foreign_id(foreign_id), status, payload)

    async def await_status(
        self,
        foreign_id: str,
        run_id: str,
        status: S,
        *,
        poll_interval: timedelta = timedelta(milliseconds=100),
        timeout: timedelta | None = None,
    ) -> Run[T, S]:
        """Wait until run ``run_id`` is in ``status`` and return it as it was then.

        The record is looked up first (so a status reached before the call counts); after
        that, every write this process makes to the run is seen at once and the store is
        polled every ``poll_interval`` for writes made elsewhere. A status that other
        processes move through faster than the poll interval can be missed; a run's final
        status never is. ``timeout`` (real time) bounds the wait; None waits as long as it
        takes.

        Raises:
            RunFinished: The run finished without reaching ``status``.
            RecordNotFound: No run has id ``run_id`` (the message says when it is a foreign
                id), or it is not a run of ``foreign_id`` in this workflow.
            TimeoutError: ``timeout`` passed first; the message names the run and status.

        """
        from ._await import await_status

        return await await_status(self, foreign_id, run_id, status, poll_interval, timeout)

    # -- options ------------------------------------------------------------------------

    def resolve(self, options: Options) -> Resolved:
        """Process options over the workflow defaults (internal)."""
        return Resolved.of(options, self.default_options)

    def count_error(self, process_name: str, run_id: str) -> int:
        """Count an error of a run in a process; returns the count (internal)."""
        key = (process_name, run_id)
        count = self.error_counts.get(key, 0) + 1
        self.error_counts[key] = count
        return count

    def clear_errors(self, process_name: str, run_id: str) -> None:
        """Forget a run's errors in a process after a success (internal)."""
        self.error_counts.pop((process_name, run_id), None)


_ACTIVE = frozenset((RunState.INITIATED, RunState.RUNNING))

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_ASYNCIO_DIR = os.path.dirname(os.path.abspath(asyncio.__file__))


def _trace_origin(limit: int = 8) -> str:
    """The caller's frames outside luno_wf and asyncio, innermost first, one per line."""
    lines: list[str] = []
    frame = sys._getframe(2)
    while frame is not None and len(lines) < limit:
        filename = frame.f_code.co_filename
        if filename.startswith(_ASYNCIO_DIR):
            break  # the event loop's own frames: nothing of the caller's beyond
        if not filename.startswith(_PACKAGE_DIR):
            lines.append(f"{filename}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back  # type: ignore[assignment]
    return "\n".join(lines)
