"""OpenTelemetry tracing: one trace per run, a span per unit of work.

``opentelemetry-api`` is optional (``luno-wf[otel]``) and imported once, here; without it
every span is the shared no-op :data:`NO_SPAN`. luno_wf never sets up a provider or an
exporter: spans go to the provider given in :class:`Tracing`, else to the global one the
application sets. While no provider is set no span is started (the global provider is
looked up again at most once a second), but a trigger still passes on a context the caller
is in.

Where the context lives: :func:`start_run` opens the trigger span and stores its W3C
``traceparent``/``tracestate`` in the run's :class:`~luno_wf.Meta`; every later write copies
them, and :func:`~luno_wf._outbox.outbox_data` puts them in each event's headers. A handler
opens its span with :meth:`RunTracer.span`, which takes the parent from the event's headers
(else the record's meta): a child of the trigger span by default, or the root of a new trace
linked to the run's with ``Tracing(trace_per_step=True)``.

Handlers reach the span they run in without holding it: :meth:`RunTracer.writing` (the
write path, which also stamps each record's ``meta.trace_id``), :meth:`RunTracer.failed`,
:meth:`RunTracer.paused` and :meth:`RunTracer.stale` act on the innermost luno_wf span of
the current task, never on an application's span.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING

import attrs

from ._event import ConnectorEvent, Header
from ._record import Record

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # opentelemetry-api is not installed: tracing is off
    OTEL_API = False
else:
    OTEL_API = True

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["NO_SPAN", "OTEL_API", "RunTracer", "SpanScope", "Tracing", "Work"]

INSTRUMENTATION = "luno_wf"
_CACHE_LIMIT = 4096
_LOOKUP_EVERY = 1.0
"""Seconds between lookups of a global tracer provider that is not set yet."""
_NO_PROVIDER = (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider) if OTEL_API else ()


@attrs.frozen(kw_only=True)
class Tracing:
    """How a workflow traces its runs with OpenTelemetry: ``build(tracing=Tracing(...))``.

    Tracing needs ``opentelemetry-api`` (``pip install 'luno-wf[otel]'``); without it, or
    with ``build(tracing=False)``, nothing is traced. luno_wf never configures a provider
    or an exporter: the application does.

    Attributes:
        provider: The ``TracerProvider`` spans come from. None (the default) uses the
            global provider (``opentelemetry.trace.set_tracer_provider``); until the
            application sets one no span is started, and it is looked up again at most
            once a second (set it before running workflows).
        trace_per_step: Make each step, timer, timeout, hook, deletion and pause retry the
            root of its own trace, linked to the run's trigger span, instead of a child of
            it (callbacks and API actions become children of their caller, linked to the
            run). For runs that last days, whose single trace would be unwieldy.

    """

    provider: TracerProvider | None = None
    trace_per_step: bool = False


class Work(enum.StrEnum):
    """The units of work that get a span; the first word of each span's name."""

    TRIGGER = "trigger"
    STEP = "step"
    CALLBACK = "callback"
    TIMER = "timer"
    TIMEOUT = "timeout"
    HOOK = "hook"
    CONNECTOR = "connector"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    DELETE_DATA = "delete_data"
    DELETE = "delete"
    PAUSE_RETRY = "pause_retry"
    COMPENSATE = "compensate"


# Work started by an event is a CONSUMER span; a trigger sends the run's first event.
_CONSUMED = frozenset(
    (Work.STEP, Work.TIMER, Work.HOOK, Work.CONNECTOR, Work.DELETE, Work.PAUSE_RETRY)
)


class SpanScope:
    """A span being recorded, as a context manager; this base class records nothing.

    :data:`NO_SPAN` is the one instance handed out when tracing is off, so handlers never
    branch on whether it is on.
    """

    __slots__ = ()

    def __enter__(self) -> SpanScope:
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        return None

    def moved(self, record: Record) -> None:
        """Note the write the work made: the status and run state the run moved to."""

    def fail(self, error: BaseException) -> None:
        """Mark the span ERROR with ``error`` recorded (once; later calls are ignored)."""

    def event(self, name: str, attributes: Mapping[str, str | int]) -> None:
        """Add a span event."""

    @property
    def trace_id(self) -> str:
        """The span's trace id as 32 hex digits; empty when nothing is recorded."""
        return ""


NO_SPAN = SpanScope()

_CURRENT: ContextVar[_LiveScope | None] = ContextVar("luno_wf_span", default=None)


class _LiveScope(SpanScope):
    """A started span: current (for OpenTelemetry and for luno_wf) inside the block."""

    __slots__ = ("_context_token", "_failed", "_scope_token", "_span")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._failed = False

    def __enter__(self) -> SpanScope:
        self._context_token = otel_context.attach(otel_trace.set_span_in_context(self._span))
        self._scope_token = _CURRENT.set(self)
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if isinstance(error, Exception):
            self.fail(error)
        _CURRENT.reset(self._scope_token)
        otel_context.detach(self._context_token)
        self._span.end()

    def moved(self, record: Record) -> None:
        self._span.set_attributes(
            {
                "luno_wf.next_status": record.meta.status_description or str(record.status),
                "luno_wf.next_run_state": record.run_state.name,
            }
        )

    def fail(self, error: BaseException) -> None:
        if self._failed:
            return
        self._failed = True
        self._span.record_exception(error)
        self._span.set_status(
            otel_trace.Status(otel_trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
        )

    def event(self, name: str, attributes: Mapping[str, str | int]) -> None:
        self._span.add_event(name, dict(attributes))

    @property
    def trace_id(self) -> str:
        return otel_trace.format_trace_id(self._span.get_span_context().trace_id)


def record_attributes(record: Record) -> dict[str, str | int]:
    """The attributes every span about a run carries."""
    return {
        "luno_wf.workflow": record.workflow_name,
        "luno_wf.run_id": record.run_id,
        "luno_wf.foreign_id": record.foreign_id,
        "luno_wf.status": record.meta.status_description or str(record.status),
        "luno_wf.version": record.meta.version,
    }


class RunTracer:
    """Starts the spans of one workflow's work (the engine's ``tracing`` component).

    Args:
        workflow_name: The workflow's name, in span names.
        tracing: The options; None turns tracing off entirely (no spans, no propagation).

    """

    def __init__(self, workflow_name: str, tracing: Tracing | None) -> None:
        self._workflow = workflow_name
        self._on = OTEL_API and tracing is not None
        self._provider = None if tracing is None else tracing.provider
        self._per_step = tracing is not None and tracing.trace_per_step
        self._tracer: Tracer | None = None
        self._next_lookup = 0.0
        self._contexts: dict[tuple[str, str], Context] = {}
        self._propagator = TraceContextTextMapPropagator() if self._on else None

    def _active(self) -> Tracer | None:
        """The tracer to start spans with, None while there is no provider to send them to.

        While the global provider is not set it is looked up again at most once every
        :data:`_LOOKUP_EVERY` seconds (a lookup costs about a microsecond, a fair share of
        a step on the memory adapters); once found, the tracer is kept (OpenTelemetry sets
        the global provider only once).
        """
        tracer = self._tracer
        if tracer is not None or not self._on:
            return tracer
        now = time.monotonic()
        if now < self._next_lookup:
            return None
        provider = self._provider or otel_trace.get_tracer_provider()
        if isinstance(provider, _NO_PROVIDER):
            self._next_lookup = now + _LOOKUP_EVERY
            return None
        self._tracer = provider.get_tracer(INSTRUMENTATION)
        return self._tracer

    # -- starting spans -------------------------------------------------------------------

    def span(
        self,
        work: Work,
        record: Record,
        *,
        headers: Mapping[str, str] | None = None,
        caller: bool = False,
        detail: str = "",
    ) -> SpanScope:
        """A span for ``work`` on the run of ``record``, to use as a context manager.

        The parent is the run's trace context, read from the event's ``headers`` if they
        carry one, else from the record's meta. With ``caller`` (callbacks, API actions)
        the caller's current span is linked to. ``detail`` (default: the run's status)
        ends the span's name.
        """
        tracer = self._tracer
        if tracer is None:
            if not self._on:
                return NO_SPAN  # without a call: this is every step's cost with tracing off
            tracer = self._active()
            if tracer is None:
                return NO_SPAN
        run = self._run_context(record, headers)
        run_span = otel_trace.get_current_span(run).get_span_context()
        links: list[otel_trace.Link] = []
        current = otel_trace.get_current_span().get_span_context() if caller else None
        parent: Context | None = run
        if self._per_step:
            parent = None if caller else _empty_context()
            if run_span.is_valid:
                links.append(otel_trace.Link(run_span, {"luno_wf.link": "run"}))
        elif current is not None and current.is_valid:
            if run_span.is_valid:
                links.append(otel_trace.Link(current, {"luno_wf.link": "caller"}))
            else:
                parent = None  # a run without a trace context: the caller's span is parent
        attributes = record_attributes(record)
        name = f"{work} {self._workflow} {detail or attributes['luno_wf.status']}"
        return self._start(tracer, name, work, parent, attributes, links)

    def trigger(self, foreign_id: str, run_id: str, status: str) -> SpanScope:
        """The span of a trigger, a child of the caller's current span."""
        tracer = self._tracer
        if tracer is None:
            if not self._on:
                return NO_SPAN
            tracer = self._active()
            if tracer is None:
                return NO_SPAN
        attributes: dict[str, str | int] = {
            "luno_wf.workflow": self._workflow,
            "luno_wf.run_id": run_id,
            "luno_wf.foreign_id": foreign_id,
            "luno_wf.status": status,
            "luno_wf.version": 1,
        }
        name = f"{Work.TRIGGER} {self._workflow} {status}"
        return self._start(tracer, name, Work.TRIGGER, None, attributes, [])

    def connector(self, name: str, event: ConnectorEvent) -> SpanScope:
        """The span of a connector handling ``event``, a child of the context it carries."""
        tracer = self._tracer or self._active()
        if tracer is None:
            return NO_SPAN
        parent = self._extract(
            event.headers.get(Header.TRACEPARENT, ""), event.headers.get(Header.TRACESTATE, "")
        )
        attributes: dict[str, str | int] = {
            "luno_wf.workflow": self._workflow,
            "luno_wf.connector": name,
            "luno_wf.event_id": event.id,
            "luno_wf.foreign_id": event.foreign_id,
            "luno_wf.event_type": event.type,
        }
        span_name = f"{Work.CONNECTOR} {self._workflow} {name}"
        return self._start(tracer, span_name, Work.CONNECTOR, parent, attributes, [])

    def _start(
        self,
        tracer: Tracer,
        name: str,
        work: Work,
        parent: Context | None,
        attributes: dict[str, str | int],
        links: list[otel_trace.Link],
    ) -> SpanScope:
        kind = (
            otel_trace.SpanKind.PRODUCER
            if work is Work.TRIGGER
            else otel_trace.SpanKind.CONSUMER
            if work in _CONSUMED
            else otel_trace.SpanKind.INTERNAL
        )
        span = tracer.start_span(
            name,
            context=parent,
            kind=kind,
            attributes=attributes,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        )
        return _LiveScope(span)

    # -- the trace context a run carries --------------------------------------------------

    def carrier(self) -> tuple[str, str]:
        """The W3C ``traceparent`` and ``tracestate`` of the current context, for a new run.

        Empty when the caller is in no valid span context, or tracing is off. A context is
        passed on even with no provider set (an application may propagate without one).
        """
        if self._propagator is None:
            return "", ""
        if not otel_trace.get_current_span().get_span_context().is_valid:
            return "", ""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get(Header.TRACEPARENT, ""), carrier.get(Header.TRACESTATE, "")

    def _run_context(self, record: Record, headers: Mapping[str, str] | None) -> Context:
        traceparent = headers.get(Header.TRACEPARENT) if headers else None
        if traceparent:
            assert headers is not None
            return self._extract(traceparent, headers.get(Header.TRACESTATE, ""))
        return self._extract(record.meta.traceparent, record.meta.tracestate)

    def _extract(self, traceparent: str, tracestate: str) -> Context:
        """The context a traceparent names (cached: a run's events all carry the same)."""
        key = (traceparent, tracestate)
        found = self._contexts.get(key)
        if found is not None:
            return found
        carrier = {Header.TRACEPARENT.value: traceparent}
        if tracestate:
            carrier[Header.TRACESTATE.value] = tracestate
        assert self._propagator is not None
        context = self._propagator.extract(carrier) if traceparent else _empty_context()
        if len(self._contexts) >= _CACHE_LIMIT:
            self._contexts.clear()
        self._contexts[key] = context
        return context

    # -- acting on the current luno_wf span -----------------------------------------------

    @staticmethod
    def writing(record: Record) -> Record:
        """The write path: ``record`` to store, noted on the current luno_wf span.

        Its ``meta.trace_id`` becomes the trace id of the current luno_wf span (empty
        outside one), so the run's history tells which trace made each write; the span
        notes the status and run state written (a write refused as stale is then noted by
        :meth:`stale`, an error by the span's status). A record that needs no change is
        returned as it is.
        """
        scope = _CURRENT.get()
        if scope is None:
            if not record.meta.trace_id:
                return record
            trace_id = ""
        else:
            scope.moved(record)
            trace_id = scope.trace_id
            if record.meta.trace_id == trace_id:
                return record
        return attrs.evolve(record, meta=attrs.evolve(record.meta, trace_id=trace_id))

    @staticmethod
    def stale() -> None:
        """Note on the current luno_wf span (if any) that its write was refused as stale."""
        scope = _CURRENT.get()
        if scope is not None:
            scope.event("luno_wf.stale", {})

    @staticmethod
    def failed(error: BaseException) -> None:
        """Mark the current luno_wf span (if any) ERROR, with ``error`` recorded."""
        scope = _CURRENT.get()
        if scope is not None:
            scope.fail(error)

    @staticmethod
    def paused(reason: str, errors: int) -> None:
        """Note on the current luno_wf span (if any) that the engine paused the run."""
        scope = _CURRENT.get()
        if scope is not None:
            scope.event("luno_wf.paused", {"luno_wf.reason": reason, "luno_wf.errors": errors})


def _empty_context() -> Context:
    return otel_context.Context()
