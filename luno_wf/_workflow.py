"""The :class:`Workflow`: the public facade of a built workflow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta, tzinfo
from types import TracebackType
from typing import Generic

from croniter import croniter

from ._await import await_status
from ._compensate import compensate
from ._control import control
from ._engine import Engine
from ._inspect import Inspection, inspect_run
from ._lookup import lookup_run
from ._processes import Supervisor, all_processes
from ._processes.callback import deliver_callback
from ._processes.schedule import Schedule
from ._processstate import ProcessState
from ._run import Run, TypedRecord
from ._runstate import RunState
from ._transition import Transition, run_history
from ._trigger import trigger
from ._types import S, T
from .errors import WorkflowError, WorkflowNotRunning

__all__ = ["Workflow", "engine_of"]


class Workflow(Generic[T, S]):
    """A built workflow. Start it with ``async with wf:`` (or :meth:`run` / :meth:`stop`).

    While running, background processes (one per step shard, plus the outbox publisher,
    hooks, timeouts, connectors, deletion and paused-run retry) each work under their own
    role, so many processes can run the same workflow and every piece of work happens in
    exactly one place. Made by :meth:`Builder.build`; it also satisfies the
    :class:`~luno_wf.API` Protocol that connector functions receive.
    """

    def __init__(self, engine: Engine[T, S]) -> None:
        self._engine = engine
        self._supervisor: Supervisor | None = None
        self._stopped = False

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self._engine.name

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} running={self.running}>"

    @property
    def running(self) -> bool:
        """Whether :meth:`run` was called and :meth:`stop` was not."""
        return self._supervisor is not None and not self._stopped

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        """Start every background process (idempotent; needs a running event loop).

        ``await`` :meth:`wait_ready` (or use ``async with``) to know they have all started.
        """
        if self._stopped:
            raise WorkflowError(
                "a stopped workflow cannot be run again; build a new one", workflow_name=self.name
            )
        if self._supervisor is not None:
            return
        supervisor = Supervisor(self._engine, all_processes(self._engine, self))
        try:
            supervisor.start()
        except RuntimeError:
            raise RuntimeError(
                "Workflow.run() needs a running event loop: call it from async code"
            ) from None
        self._supervisor = supervisor

    async def wait_ready(self) -> None:
        """Wait until every background process has started."""
        if self._supervisor is None:
            raise WorkflowNotRunning(workflow_name=self.name)
        await self._supervisor.wait_ready()

    async def stop(self, *, timeout: timedelta = timedelta(seconds=30)) -> None:
        """Stop every background process, letting work in flight finish first.

        Processes that are waiting stop at once. A step (or timeout, hook, ...) already
        running finishes and its write is stored, then its process releases its role, so
        another process of the fleet takes over at once. Work still running after
        ``timeout`` is cancelled at its next ``await``: a write either happened whole or
        not at all, and an event whose work was not finished is redelivered to the next
        process that takes the role.
        """
        already = self._stopped
        self._stopped = True
        if self._supervisor is not None and not already:
            await self._supervisor.stop(timeout.total_seconds())

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
        return self._engine.states.snapshot()

    def _require_running(self, verb: str) -> Supervisor:
        if self._supervisor is None or self._stopped:
            raise WorkflowNotRunning(
                f"{verb} failed: workflow is not running", workflow_name=self.name
            )
        return self._supervisor

    # -- API ----------------------------------------------------------------------------

    async def trigger(
        self,
        foreign_id: str,
        *,
        initial_value: T | None = None,
        start_at: S | None = None,
        actor: str | None = None,
    ) -> str:
        """Start a run of ``foreign_id`` and return its run id.

        Args:
            foreign_id: The caller's business key; one unfinished run per foreign id.
            initial_value: The object the run starts with (default: ``object_type()``).
            start_at: The status to start in (default: the first starting point).
            actor: Who starts it, kept in the run's history (default ``"api"``, or
                ``"connector:<name>"`` inside a connector function).

        It needs no :meth:`run`: a process that only starts runs (a web handler, a script)
        writes them, and the workers of the fleet move them.

        Raises:
            WorkflowInProgress: The foreign id has an unfinished run.
            UnknownStatus: ``start_at`` is not a status of this workflow, or is terminal.

        """
        return await trigger(self._engine, foreign_id, initial_value, start_at, actor)

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
        supervisor = self._require_running("schedule")
        self._engine.check_foreign_id(foreign_id)
        if not isinstance(cron_spec, str) or not croniter.is_valid(cron_spec):
            raise ValueError(f"invalid cron expression {cron_spec!r}")
        schedule = Schedule(
            self._engine,
            foreign_id,
            cron_spec,
            initial_value=initial_value,
            filter=filter,
            timezone=timezone,
        )
        await supervisor.run_alongside(schedule.process())

    async def lookup(self, run_id: str) -> TypedRecord[T, S]:
        """The run ``run_id``; raises :class:`~luno_wf.errors.RecordNotFound`."""
        return self._engine.typed(await lookup_run(self._engine.store, self.name, run_id))

    async def latest(self, foreign_id: str) -> TypedRecord[T, S]:
        """The newest run of ``foreign_id``; raises :class:`~luno_wf.errors.RecordNotFound`."""
        self._engine.check_foreign_id(foreign_id)
        return self._engine.typed(await self._engine.store.latest(self.name, foreign_id))

    async def pause(self, run_id: str, reason: str, *, actor: str | None = None) -> None:
        """Pause a run; its steps stop until :meth:`resume` (or the paused-run retry).

        ``actor`` (here and in the other run-state verbs) names who asks, e.g.
        ``"operator:alice"``, in the run's history; default ``"api"`` (or
        ``"connector:<name>"`` inside a connector function).
        """
        await control(self._engine, run_id, RunState.PAUSED, reason, actor)

    async def resume(self, run_id: str, *, actor: str | None = None) -> None:
        """Resume a paused run; its current status is processed again."""
        await control(self._engine, run_id, RunState.RUNNING, "", actor)

    async def cancel(self, run_id: str, reason: str, *, actor: str | None = None) -> None:
        """Cancel a run for good."""
        await control(self._engine, run_id, RunState.CANCELLED, reason, actor)

    async def delete_data(self, run_id: str, reason: str, *, actor: str | None = None) -> None:
        """Request deletion of a finished run's data; the record stays, its object is replaced."""
        await control(self._engine, run_id, RunState.REQUESTED_DATA_DELETED, reason, actor)

    async def history(self, run_id: str) -> list[Transition[S]]:
        """The run's history: one :class:`~luno_wf.Transition` per write, oldest first.

        Empty for writes made while history was off (``build(history=False)``), or pruned.

        Raises:
            HistoryNotKept: The record store keeps no history (not a ``HistoryStore``).
            RecordNotFound: No run of this workflow has that id (the message says when it is
                a foreign id).

        """
        return await run_history(self._engine, run_id)

    async def compensate(
        self, run_id: str, reason: str, *, to: S | None = None, actor: str | None = None
    ) -> None:
        """Undo what the run did, newest first, then cancel it with ``reason``.

        The run is paused first (reason ``compensating: <reason>``). Then, for each status it
        entered, newest first, down to (excluding) the latest time it entered ``to`` (all of
        them, the start status included, if ``to`` is None), the compensation function of
        that status (:meth:`Builder.add_compensation`) is called with the run: its
        ``status`` is the status being undone, its object the run's current object (changes
        are stored). Each call is recorded in the history, so after a crash or a failing
        compensation function, calling ``compensate`` again carries on where it stopped.
        Calls for one run in one process take turns; a second process compensating the run
        at the same time gets ``StaleRecord``.

        Args:
            run_id: The run.
            reason: Why; the run is cancelled with it.
            to: Stop before this status (it and what came before it stay done).
            actor: Who asks (default ``"compensate"``); names the pause and the cancel.

        Raises:
            UnableToCompensate: The run is not running or paused (finished, cancelled, ...).
            HistoryNotKept: The store keeps no history, or the workflow turned it off.
            ValueError: The run never entered ``to``.
            RecordNotFound: No run of this workflow has that id.
            StaleRecord: The run was written meanwhile (another process compensating it).

        A compensation function's error propagates unchanged; the run stays paused.
        """
        await compensate(self._engine, run_id, reason, to, actor)

    async def inspect(self, run_id: str) -> Inspection[T, S]:
        """A debug report of the run: record, history, timeouts, outbox, errors, role.

        ``print(await wf.inspect(run_id))`` shows it as text; see
        :class:`~luno_wf.Inspection` for what each part says and how far it looks.

        Raises:
            RecordNotFound: No run of this workflow has that id.

        """
        return await inspect_run(self._engine, run_id)

    async def callback(
        self,
        foreign_id: str,
        status: S,
        payload: bytes,
        *,
        run_id: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Deliver ``payload`` to the callbacks of ``status`` for a run of ``foreign_id``.

        The run is ``run_id`` if given, else the foreign id's latest run. The write names
        ``actor`` in the run's history (default ``"callback:<STATUS>"``, or
        ``"connector:<name>"`` inside a connector function).

        Raises:
            CallbackNotAccepted: No callback on that status, or the run is not waiting in
                that status (or is paused, cancelled or deleted).
            RecordNotFound: The foreign id has no run, or ``run_id`` is not one of its runs.

        """
        foreign_id = self._engine.check_foreign_id(foreign_id)
        await deliver_callback(self._engine, foreign_id, status, payload, run_id, actor)

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
        return await await_status(self._engine, foreign_id, run_id, status, poll_interval, timeout)


def engine_of(wf: Workflow[T, S]) -> Engine[T, S]:
    """The engine behind ``wf``, for luno_wf's own modules (``testing``, ``visualise``)."""
    return wf._engine
