"""The :class:`Builder`: describe a workflow, then :meth:`~Builder.build` it."""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Generic

import cattrs

from ._clock import Clock, SystemClock
from ._converter import Codec
from ._definition import (
    CallbackSpec,
    ConnectorSpec,
    Definition,
    Settings,
    StepSpec,
    TimeoutSpec,
)
from ._engine import Engine
from ._graph import Graph
from ._metrics import NO_METRICS, Metrics, MetricsSink, default_metrics
from ._options import ExponentialBackoff, Options
from ._runstate import RunState
from ._tracing import Tracing
from ._types import AnyFunc, OneOrMore, S, T
from ._workflow import Workflow
from .adapter import ConnectorConstructor, EventStreamer, RecordStore, RoleScheduler, TimeoutStore

if TYPE_CHECKING:
    from ._types import (
        CallbackFunc,
        CompensateFunc,
        ConnectorFunc,
        HookFunc,
        StepFunc,
        TimeoutFunc,
        TimerFunc,
    )

__all__ = ["Builder"]

_RESERVED = (0, -1, -2)


def _require_async(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be an async function, got {fn!r}")
    if not inspect.iscoroutinefunction(fn) and not inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects are fine too
    ):
        raise TypeError(f"{what} must be an async function (async def), got {fn!r}")


def _check_type_arguments(object_type: object) -> None:
    """Refuse a generic class without its type arguments: runs could never be decoded."""
    missing = getattr(object_type, "__parameters__", ())
    if not (isinstance(missing, tuple) and missing):
        return
    name = object_type.__qualname__ if isinstance(object_type, type) else repr(object_type)
    params = ", ".join(getattr(p, "__name__", repr(p)) for p in missing)
    raise TypeError(
        f"object_type {name} is generic but has no type arguments for {params}: pass it "
        f"with concrete types, as {getattr(object_type, '__name__', name)}"
        f"[{', '.join('...' for _ in missing)}]; without them a run's object cannot be "
        "decoded and no run would ever move"
    )


class Builder(Generic[T, S]):
    """Describes a workflow: its statuses, steps, callbacks, timeouts, connectors and hooks.

    ``Builder("task-processor", Task, TaskStatus)`` is a ``Builder[Task, TaskStatus]``; every
    function added must then take ``Run[Task, TaskStatus]`` and return ``TaskStatus``, which
    mypy checks. Wiring mistakes (a duplicate step, a reserved status, a status of another
    enum) raise at once; graph-wide checks raise in :meth:`build`.

    Args:
        name: The workflow's name; records, topics and roles are named after it.
        object_type: The class of the object each run carries (anything cattrs can structure);
            a generic class with its type arguments (``Envelope[Invoice]``, not ``Envelope``).
        status_type: The ``IntEnum`` of statuses. Value 0 is reserved (never a real status).

    """

    def __init__(self, name: str, object_type: type[T], status_type: type[S]) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"workflow name must be a non-empty string, got {name!r}")
        if not (isinstance(status_type, type) and issubclass(status_type, enum.IntEnum)):
            raise TypeError(f"status_type must be an IntEnum subclass, got {status_type!r}")
        _check_type_arguments(object_type)
        self.name = name
        self.object_type = object_type
        self.status_type = status_type
        self.graph = Graph()
        self.steps: dict[int, StepSpec] = {}
        self.callbacks: dict[int, list[CallbackSpec]] = {}
        self.timeouts: dict[int, list[TimeoutSpec]] = {}
        self.timeout_options: dict[int, Options] = {}
        self.connectors: dict[str, ConnectorSpec] = {}
        self.hooks: dict[RunState, AnyFunc] = {}
        self.compensations: dict[int, AnyFunc] = {}

    def _check_status(self, status: object, role: str) -> enum.IntEnum:
        if not isinstance(status, self.status_type):
            raise TypeError(
                f"{role} status must be a member of {self.status_type.__name__}, got {status!r}"
            )
        if int(status) in _RESERVED:
            raise ValueError(f"cannot use reserved node as '{role}' node: {status!r}")
        return status

    def _add_edges(self, from_status: S, to: tuple[S, ...], kind: str) -> tuple[S, ...]:
        self._check_status(from_status, "from")
        if not to:
            raise ValueError(f"{kind}({from_status!r}) needs at least one destination status")
        for target in to:
            self._check_status(target, "to")
        for target in to:
            self.graph.add(int(from_status), int(target))
        return to

    def add_step(
        self,
        from_status: S,
        fn: StepFunc[T, S],
        *to: *OneOrMore[S],
        parallel_count: int | None = None,
        polling_frequency: timedelta | None = None,
        err_backoff: timedelta | ExponentialBackoff | None = None,
        lag: timedelta | None = None,
        lag_alert: timedelta | None = None,
        pause_after_err_count: int | None = None,
        concurrency: int | None = None,
    ) -> None:
        """Consume runs in ``from_status`` with ``fn``, which returns one of ``to``.

        ``to`` is one or more statuses (mypy reports a call without one). Only one step may
        consume a status. Options (keyword-only) override the workflow defaults for this
        step's consumers; see :class:`luno_wf.Options`.
        """
        if int(from_status) in self.steps:
            raise ValueError(
                f"'add_step({from_status!r},' already exists. "
                "Only one Step can be configured to consume the status"
            )
        _require_async(fn, f"step function for {from_status!r}")
        options = Options(
            parallel_count=parallel_count,
            polling_frequency=polling_frequency,
            err_backoff=err_backoff,
            lag=lag,
            lag_alert=lag_alert,
            pause_after_err_count=pause_after_err_count,
            concurrency=concurrency,
        )
        targets = self._add_edges(from_status, to, "add_step")
        self.steps[int(from_status)] = StepSpec(from_status, fn, targets, options)

    def add_callback(self, from_status: S, fn: CallbackFunc[T, S], *to: *OneOrMore[S]) -> None:
        """Let :meth:`Workflow.callback` move runs in ``from_status`` with ``fn``.

        ``fn`` returns one of ``to`` (one or more statuses). Several callbacks may share a
        status; they are tried in the order added.
        """
        _require_async(fn, f"callback function for {from_status!r}")
        targets = self._add_edges(from_status, to, "add_callback")
        self.callbacks.setdefault(int(from_status), []).append(
            CallbackSpec(from_status, fn, targets)
        )

    def add_timeout(
        self,
        from_status: S,
        timer: TimerFunc[T, S],
        fn: TimeoutFunc[T, S],
        *to: *OneOrMore[S],
        polling_frequency: timedelta | None = None,
        err_backoff: timedelta | ExponentialBackoff | None = None,
        lag_alert: timedelta | None = None,
        pause_after_err_count: int | None = None,
    ) -> None:
        """When a run enters ``from_status``, ``timer`` says when ``fn`` should run.

        ``fn`` returns one of ``to`` (one or more statuses). Timeouts need a timeout store
        (``build(timeout_store=)``). There is no ``parallel_count`` or ``lag`` here: one
        process fires a status's timeouts, when they are due.
        """
        _require_async(timer, f"timer function for {from_status!r}")
        _require_async(fn, f"timeout function for {from_status!r}")
        options = Options(
            polling_frequency=polling_frequency,
            err_backoff=err_backoff,
            lag_alert=lag_alert,
            pause_after_err_count=pause_after_err_count,
        )
        targets = self._add_edges(from_status, to, "add_timeout")
        specs = self.timeouts.setdefault(int(from_status), [])
        specs.append(TimeoutSpec(from_status, len(specs), timer, fn, targets))
        if options != Options() or int(from_status) not in self.timeout_options:
            self.timeout_options[int(from_status)] = options

    def add_connector(
        self,
        name: str,
        constructor: ConnectorConstructor,
        fn: ConnectorFunc[T, S],
        *,
        parallel_count: int | None = None,
        err_backoff: timedelta | ExponentialBackoff | None = None,
        lag: timedelta | None = None,
        lag_alert: timedelta | None = None,
    ) -> None:
        """Feed events of an external source (``constructor``) to ``fn``; names are unique."""
        if not name or not isinstance(name, str):
            raise ValueError(f"connector name must be a non-empty string, got {name!r}")
        if name in self.connectors:
            raise ValueError(f"connector names need to be unique: {name!r} is taken")
        _require_async(fn, f"connector function {name!r}")
        options = Options(
            parallel_count=parallel_count, err_backoff=err_backoff, lag=lag, lag_alert=lag_alert
        )
        self.connectors[name] = ConnectorSpec(name, constructor, fn, options)

    def on_complete(self, fn: HookFunc[T, S]) -> None:
        """Call ``fn`` with each run that completed (replaces an earlier hook)."""
        _require_async(fn, "on_complete hook")
        self.hooks[RunState.COMPLETED] = fn

    def on_pause(self, fn: HookFunc[T, S]) -> None:
        """Call ``fn`` with each run that was paused (replaces an earlier hook)."""
        _require_async(fn, "on_pause hook")
        self.hooks[RunState.PAUSED] = fn

    def on_cancel(self, fn: HookFunc[T, S]) -> None:
        """Call ``fn`` with each run that was cancelled (replaces an earlier hook)."""
        _require_async(fn, "on_cancel hook")
        self.hooks[RunState.CANCELLED] = fn

    def add_compensation(self, status: S, fn: CompensateFunc[T, S]) -> None:
        """Undo what entering ``status`` did, when :meth:`Workflow.compensate` is called.

        ``fn`` is called with the run (its ``status`` is ``status``) for each time the run
        entered ``status``, newest first; see :meth:`Workflow.compensate`. One compensation
        per status; the status must be a status of the graph (checked in :meth:`build`).
        """
        self._check_status(status, "compensation")
        if int(status) in self.compensations:
            raise ValueError(
                f"add_compensation({status!r}, ...) already exists: one compensation per status"
            )
        _require_async(fn, f"compensation function for {status!r}")
        self.compensations[int(status)] = fn

    def build(
        self,
        streamer: EventStreamer,
        store: RecordStore,
        scheduler: RoleScheduler,
        *,
        timeout_store: TimeoutStore | None = None,
        clock: Clock | None = None,
        converter: cattrs.Converter | None = None,
        default_options: Options | None = None,
        pause_retry: timedelta | None = timedelta(hours=1),
        custom_delete: Callable[[T], Awaitable[T]] | None = None,
        outbox: bool = True,
        logger: logging.Logger | None = None,
        debug: bool = False,
        metrics: Metrics | bool = True,
        history: bool = True,
        history_objects: bool = False,
        tracing: Tracing | bool = True,
    ) -> Workflow[T, S]:
        """Validate the graph and make the :class:`~luno_wf.Workflow`.

        Args:
            streamer: Carries events between processes.
            store: Stores records and their outbox.
            scheduler: Grants each background process its role.
            timeout_store: Required when timeouts were added.
            clock: The engine's clock (a :class:`luno_wf.testing.FakeClock` in tests).
            converter: A cattrs converter for the run objects (default: JSON preset).
            default_options: Defaults for every process, merged over luno's defaults.
            pause_retry: Resume paused runs after this long; None disables.
            custom_delete: ``async (T) -> T`` giving the object kept after data deletion.
            outbox: Run the outbox publisher here (False: something else publishes).
            logger: Where to log (default: the ``luno_wf`` logger).
            debug: Log debug lines too.
            metrics: True: prometheus' default registry; a ``Metrics``: its registry; False: none.
            history: Keep every run's history (on a ``HistoryStore``); compensation needs it.
            history_objects: Keep each write's encoded object in its history entry.
            tracing: OpenTelemetry: True, the global tracer provider; a ``Tracing``; False, none.

        Raises:
            ValueError: No starting point, timeouts with no timeout_store, a compensation off-graph.
            TypeError: ``metrics`` or ``tracing`` is neither a bool nor of its options class.

        """
        options = self._check_build(timeout_store, pause_retry, custom_delete, default_options)
        tracer = _tracing_options(tracing)
        settings = Settings(
            options, pause_retry, custom_delete, outbox, debug, history, history_objects, tracer
        )
        engine = self._engine(
            settings, streamer, store, scheduler, timeout_store, clock, converter, logger, metrics
        )
        return Workflow(engine)

    def _engine(
        self,
        settings: Settings[T],
        streamer: EventStreamer,
        store: RecordStore,
        scheduler: RoleScheduler,
        timeout_store: TimeoutStore | None,
        clock: Clock | None,
        converter: cattrs.Converter | None,
        logger: logging.Logger | None,
        metrics: Metrics | bool,
    ) -> Engine[T, S]:
        return Engine(
            self._definition(),
            settings,
            streamer=streamer,
            store=store,
            scheduler=scheduler,
            timeout_store=timeout_store,
            clock=clock or SystemClock(),
            codec=Codec(self.object_type, converter),
            logger=logger or logging.getLogger("luno_wf"),
            metrics=_metrics_sink(metrics),
        )

    def _definition(self) -> Definition[T, S]:
        return Definition.of(
            name=self.name,
            object_type=self.object_type,
            status_type=self.status_type,
            graph=self.graph,
            steps=self.steps,
            callbacks=self.callbacks,
            timeouts=self.timeouts,
            timeout_options=self.timeout_options,
            connectors=self.connectors,
            hooks=self.hooks,
            compensations=self.compensations,
        )

    def _check_build(
        self,
        timeout_store: TimeoutStore | None,
        pause_retry: timedelta | None,
        custom_delete: object,
        default_options: object,
    ) -> Options:
        """Check the build's arguments; returns the default options."""
        if self.timeouts and timeout_store is None:
            raise ValueError(
                "Cannot configure timeouts without providing TimeoutStore for workflow "
                f"{self.name!r}: pass build(timeout_store=...)"
            )
        if not self.graph.starting():
            raise ValueError(
                "Workflow requires at least one starting point. Please provide at least one "
                "Step, Callback, or Timeout to add a starting point."
            )
        if pause_retry is not None and pause_retry <= timedelta(0):
            raise ValueError(f"pause_retry must be positive or None, got {pause_retry}")
        if custom_delete is not None:
            _require_async(custom_delete, "custom_delete")
        for status in self.compensations:
            if not self.graph.is_valid(status):
                raise ValueError(
                    f"add_compensation({self.status_type(status)!r}, ...): the status is not "
                    f"a status of workflow {self.name!r} (no step, callback or timeout "
                    "leads to or from it)"
                )
        if default_options is None:
            return Options()
        if not isinstance(default_options, Options):
            raise TypeError(f"default_options must be luno_wf.Options, got {default_options!r}")
        return default_options


def _tracing_options(tracing: object) -> Tracing | None:
    if isinstance(tracing, bool):
        return Tracing() if tracing else None
    if isinstance(tracing, Tracing):
        return tracing
    raise TypeError(
        f"tracing must be True (the global tracer provider), a luno_wf.Tracing or False "
        f"(no tracing), got {tracing!r}"
    )


def _metrics_sink(metrics: object) -> MetricsSink:
    if isinstance(metrics, bool):
        return default_metrics() if metrics else NO_METRICS
    if isinstance(metrics, Metrics):
        return metrics
    raise TypeError(
        "metrics must be True (the default registry), a luno_wf.metrics.Metrics or "
        f"False (no metrics), got {metrics!r}"
    )
