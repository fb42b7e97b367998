"""OpenTelemetry tracing on the memory adapters: one trace per run, a span per unit of work.

Spans go to an SDK provider passed with ``build(tracing=Tracing(provider=...))`` and are
read back from an ``InMemorySpanExporter``; the global provider is never set here, so the
"API installed, no provider" case is the default build.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from luno_wf import Builder, ConnectorEvent, Header, Run, RunState, Tracing, TypedRecord
from luno_wf.memory import MemConnector, MemStreamer
from luno_wf.testing import FakeClock, await_timeout_insert, wait_for

from .support import FAST, Obj, Status, Stores

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def three_steps(fail_middle: bool = False) -> Builder[Obj, Status]:
    async def start(r: Run[Obj, Status]) -> Status:
        r.object.count += 1
        return Status.MIDDLE

    async def middle(r: Run[Obj, Status]) -> Status:
        if fail_middle:
            raise RuntimeError("card declined")
        r.object.count += 1
        return Status.END

    async def end(r: Run[Obj, Status]) -> Status:
        r.object.count += 1
        return Status.OTHER

    b = Builder("traced", Obj, Status)
    b.add_step(Status.STARTED, start, Status.MIDDLE, polling_frequency=FAST)
    b.add_step(
        Status.MIDDLE,
        middle,
        Status.END,
        polling_frequency=FAST,
        err_backoff=timedelta(milliseconds=5),
        pause_after_err_count=2,
    )
    b.add_step(Status.END, end, Status.OTHER, polling_frequency=FAST)
    return b


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def traceparent_of(context: SpanContext | None) -> str:
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


async def spans_named(
    exporter: InMemorySpanExporter, *names: str, within: float = 5
) -> dict[str, ReadableSpan]:
    async with asyncio.timeout(within):
        while True:
            found = by_name(exporter.get_finished_spans())
            if all(name in found for name in names):
                return found
            await asyncio.sleep(0.005)


async def test_a_three_step_run_is_one_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    stores = Stores()
    wf = stores.build(three_steps(), tracing=Tracing(provider=provider))
    async with wf:
        run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await wf.await_status("o-1", run_id, Status.OTHER)
        spans = await spans_named(
            exporter,
            "trigger traced STARTED",
            "step traced STARTED",
            "step traced MIDDLE",
            "step traced END",
        )
    trigger = spans["trigger traced STARTED"]
    steps = [spans[f"step traced {name}"] for name in ("STARTED", "MIDDLE", "END")]
    assert trigger.parent is None and trigger.kind is SpanKind.PRODUCER
    assert {trace_of(span) for span in [trigger, *steps]} == {trace_of(trigger)}
    for span, (status, moved_to, version) in zip(
        steps, [("STARTED", "MIDDLE", 1), ("MIDDLE", "END", 2), ("END", "OTHER", 3)], strict=True
    ):
        assert span.parent is not None and span.parent.span_id == span_id(trigger)
        assert span.kind is SpanKind.CONSUMER
        assert span.status.status_code is StatusCode.UNSET
        assert attributes(span) == {
            "luno_wf.workflow": "traced",
            "luno_wf.run_id": run_id,
            "luno_wf.foreign_id": "o-1",
            "luno_wf.status": status,
            "luno_wf.version": version,
            "luno_wf.next_status": moved_to,
            "luno_wf.next_run_state": "COMPLETED" if moved_to == "OTHER" else "RUNNING",
        }
    assert attributes(trigger)["luno_wf.run_id"] == run_id
    assert attributes(trigger)["luno_wf.next_status"] == "STARTED"


async def test_the_run_carries_the_trigger_context_on_every_write_and_event(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = Stores()
    seen: list[dict[str, str]] = []
    original = MemStreamer._append

    def spy(self: MemStreamer, topic: str, foreign_id: str, *rest: Any) -> None:
        seen.append(dict(rest[1]))  # the headers
        original(self, topic, foreign_id, *rest)

    monkeypatch.setattr(MemStreamer, "_append", spy)
    wf = stores.build(three_steps(), tracing=Tracing(provider=provider))
    async with wf:
        run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await wf.await_status("o-1", run_id, Status.OTHER)
        spans = await spans_named(exporter, "trigger traced STARTED")
    trigger = spans["trigger traced STARTED"]
    traceparent = traceparent_of(trigger.get_span_context())
    snapshots = stores.store.snapshots("traced", "o-1", run_id)
    assert [r.meta.traceparent for r in snapshots] == [traceparent] * 4
    assert len(seen) == 4
    assert {h[Header.TRACEPARENT] for h in seen} == {traceparent}
    assert all(Header.TRACESTATE not in h for h in seen)


async def test_a_trigger_inside_an_application_span_is_its_child(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    wf = Stores().build(three_steps(), tracing=Tracing(provider=provider))
    tracer = provider.get_tracer("app")
    async with wf:
        with tracer.start_as_current_span("POST /orders") as request:
            run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await wf.await_status("o-1", run_id, Status.OTHER)
        spans = await spans_named(exporter, "step traced END")
    trigger = spans["trigger traced STARTED"]
    assert trigger.parent is not None
    assert trigger.parent.span_id == request.get_span_context().span_id
    assert trace_of(spans["step traced END"]) == request.get_span_context().trace_id


async def test_a_failing_step_span_is_an_error_with_the_exception_and_the_pause(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    wf = Stores().build(three_steps(fail_middle=True), tracing=Tracing(provider=provider))
    async with wf:
        run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await wait_for(wf, "o-1", lambda r: r.run_state == RunState.PAUSED)
        async with asyncio.timeout(5):
            while len(failed := _named(exporter, "step traced MIDDLE")) < 2:
                await asyncio.sleep(0.005)
    first, second = failed[:2]
    for span in (first, second):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "RuntimeError: card declined"
        [exception] = [e for e in span.events if e.name == "exception"]
        assert exception.attributes is not None
        assert exception.attributes["exception.type"] == "RuntimeError"
        assert exception.attributes["exception.message"] == "card declined"
        assert attributes(span)["luno_wf.run_id"] == run_id
    assert [e.name for e in first.events] == ["exception"]
    paused = [e for e in second.events if e.name == "luno_wf.paused"]
    assert len(paused) == 1 and paused[0].attributes is not None
    assert str(paused[0].attributes["luno_wf.reason"]).endswith("RuntimeError: card declined")
    assert paused[0].attributes["luno_wf.errors"] == 2
    assert attributes(second)["luno_wf.next_run_state"] == "PAUSED"


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_trace_per_step_makes_each_step_a_trace_linked_to_the_run(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    wf = Stores().build(three_steps(), tracing=Tracing(provider=provider, trace_per_step=True))
    async with wf:
        run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await wf.await_status("o-1", run_id, Status.OTHER)
        spans = await spans_named(
            exporter, "step traced STARTED", "step traced MIDDLE", "step traced END"
        )
    trigger = spans["trigger traced STARTED"]
    steps = [spans[f"step traced {name}"] for name in ("STARTED", "MIDDLE", "END")]
    assert len({trace_of(span) for span in [trigger, *steps]}) == 4
    for span in steps:
        assert span.parent is None
        [link] = span.links
        assert link.context.span_id == span_id(trigger)
        assert link.context.trace_id == trace_of(trigger)
        assert dict(link.attributes or {}) == {"luno_wf.link": "run"}


async def test_callbacks_and_api_actions_join_the_run_and_link_the_caller(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def paid(r: Run[Obj, Status], payload: bytes) -> Status:
        r.object.note = payload.decode()
        return Status.END

    b = Builder("traced", Obj, Status)
    b.add_callback(Status.STARTED, paid, Status.END)
    b.add_callback(Status.END, paid, Status.OTHER)
    wf = Stores().build(b, tracing=Tracing(provider=provider))
    tracer = provider.get_tracer("app")
    async with wf:
        run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        with tracer.start_as_current_span("webhook") as webhook:
            await wf.callback("o-1", Status.STARTED, b"PAY-1")
        with tracer.start_as_current_span("admin") as admin:
            await wf.pause(run_id, "checking")
            await wf.resume(run_id)
            await wf.cancel(run_id, "fraud")
    spans = by_name(exporter.get_finished_spans())
    trigger = spans["trigger traced STARTED"]
    for name, caller in [
        ("callback traced STARTED", webhook),
        ("pause traced END", admin),
        ("resume traced END", admin),
        ("cancel traced END", admin),
    ]:
        span = spans[name]
        assert span.parent is not None and span.parent.span_id == span_id(trigger), name
        [link] = span.links
        assert link.context.span_id == caller.get_span_context().span_id, name
        assert dict(link.attributes or {}) == {"luno_wf.link": "caller"}
    assert attributes(spans["callback traced STARTED"])["luno_wf.next_status"] == "END"
    assert attributes(spans["pause traced END"])["luno_wf.next_run_state"] == "PAUSED"
    assert attributes(spans["cancel traced END"])["luno_wf.next_run_state"] == "CANCELLED"


async def test_timeouts_and_hooks_have_spans_in_the_run_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    completed = asyncio.Event()

    async def timer(r: Run[Obj, Status], now: datetime) -> datetime:
        return now + timedelta(hours=1)

    async def expire(r: Run[Obj, Status], now: datetime) -> Status:
        return Status.END

    async def on_complete(r: TypedRecord[Obj, Status]) -> None:
        completed.set()

    b = Builder("traced", Obj, Status)
    b.add_timeout(Status.STARTED, timer, expire, Status.END, polling_frequency=FAST)
    b.on_complete(on_complete)
    wf = Stores(clock=clock).build(b, tracing=Tracing(provider=provider))
    async with wf:
        run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await await_timeout_insert(wf, "o-1", run_id, Status.STARTED)
        clock.advance(timedelta(hours=2))
        async with asyncio.timeout(5):
            await completed.wait()
        spans = await spans_named(
            exporter, "timer traced STARTED", "timeout traced STARTED", "hook traced COMPLETED"
        )
    trigger = spans["trigger traced STARTED"]
    for name in ("timer traced STARTED", "timeout traced STARTED", "hook traced COMPLETED"):
        span = spans[name]
        assert span.parent is not None and span.parent.span_id == span_id(trigger), name
        assert attributes(span)["luno_wf.run_id"] == run_id
    assert attributes(spans["timeout traced STARTED"])["luno_wf.next_status"] == "END"
    assert attributes(spans["hook traced COMPLETED"])["luno_wf.status"] == "END"


async def test_a_connector_continues_the_trace_its_event_carries(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    upstream = provider.get_tracer("app").start_span("upstream")
    context = upstream.get_span_context()
    upstream.end()
    event = ConnectorEvent(
        id="e-1",
        foreign_id="o-1",
        type="paid",
        headers={"traceparent": traceparent_of(context)},
        created_at=datetime.now(UTC),
    )
    b = three_steps()

    async def start_run(api: object, e: ConnectorEvent) -> None:
        await wf.trigger(e.foreign_id, initial_value=Obj(id=e.foreign_id))

    b.add_connector("payments", MemConnector([event]), start_run)
    wf = Stores().build(b, tracing=Tracing(provider=provider))
    async with wf:
        spans = await spans_named(exporter, "connector traced payments", "step traced END")
    connector = spans["connector traced payments"]
    assert connector.parent is not None and connector.parent.span_id == context.span_id
    assert attributes(connector)["luno_wf.event_id"] == "e-1"
    trigger = spans["trigger traced STARTED"]
    assert trigger.parent is not None and trigger.parent.span_id == span_id(connector)
    assert trace_of(spans["step traced END"]) == context.trace_id


async def test_without_a_provider_no_span_is_started_but_the_context_travels(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    stores = Stores()
    wf = stores.build(three_steps())  # the global provider, which is not set
    async with wf:
        with provider.get_tracer("app").start_as_current_span("request") as request:
            run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await wf.await_status("o-1", run_id, Status.OTHER)
    assert [span.name for span in exporter.get_finished_spans()] == ["request"]
    context = request.get_span_context()
    snapshots = stores.store.snapshots("traced", "o-1", run_id)
    expected = traceparent_of(context)
    assert {r.meta.traceparent for r in snapshots} == {expected}


async def test_tracing_false_neither_traces_nor_propagates(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    stores = Stores()
    wf = stores.build(three_steps(), tracing=False)
    async with wf:
        with provider.get_tracer("app").start_as_current_span("request"):
            run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await wf.await_status("o-1", run_id, Status.OTHER)
    assert [span.name for span in exporter.get_finished_spans()] == ["request"]
    assert {r.meta.traceparent for r in stores.store.snapshots("traced", "o-1", run_id)} == {""}


def test_build_refuses_a_tracing_value_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"tracing must be True"):
        Stores().build(three_steps(), tracing="yes")


def test_without_opentelemetry_installed_tracing_is_off() -> None:
    program = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["opentelemetry"] = None  # as if not installed: importing it fails
        from luno_wf import Builder, Run, _tracing
        from tests.support import Obj, Status, Stores

        async def step(r: Run[Obj, Status]) -> Status:
            r.object.count += 1
            return Status.END

        async def main() -> None:
            b = Builder("untraced", Obj, Status)
            b.add_step(Status.STARTED, step, Status.END)
            async with (wf := Stores().build(b)):
                run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
                run = await wf.await_status("o-1", run_id, Status.END)
            assert not _tracing.OTEL_API
            assert "opentelemetry.trace" not in sys.modules
            assert run.meta.traceparent == ""
            print("done", run.object.count)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done 1"


async def test_with_trace_per_step_a_callback_is_its_callers_child_linked_to_the_run(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def paid(r: Run[Obj, Status], payload: bytes) -> Status:
        return Status.END

    b = Builder("traced", Obj, Status)
    b.add_callback(Status.STARTED, paid, Status.END)
    wf = Stores().build(b, tracing=Tracing(provider=provider, trace_per_step=True))
    async with wf:
        await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        with provider.get_tracer("app").start_as_current_span("webhook") as webhook:
            await wf.callback("o-1", Status.STARTED, b"PAY-1")
    spans = by_name(exporter.get_finished_spans())
    callback = spans["callback traced STARTED"]
    assert callback.parent is not None
    assert callback.parent.span_id == webhook.get_span_context().span_id
    [link] = callback.links
    assert link.context.span_id == span_id(spans["trigger traced STARTED"])


async def test_each_write_carries_the_trace_id_of_the_span_that_made_it(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    for per_step in (False, True):
        exporter.clear()
        stores = Stores()
        wf = stores.build(
            three_steps(), tracing=Tracing(provider=provider, trace_per_step=per_step)
        )
        async with wf:
            run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
            await wf.await_status("o-1", run_id, Status.OTHER)
            spans = await spans_named(exporter, "step traced END")
        makers = [spans["trigger traced STARTED"]] + [
            spans[f"step traced {name}"] for name in ("STARTED", "MIDDLE", "END")
        ]
        expected = [f"{trace_of(span):032x}" for span in makers]
        history = await stores.store.history(run_id)
        assert [entry.trace_id for entry in history] == expected
        assert len(set(expected)) == (4 if per_step else 1)


async def test_without_tracing_writes_carry_no_trace_id() -> None:
    stores = Stores()
    wf = stores.build(three_steps(), tracing=False)
    async with wf:
        run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await wf.await_status("o-1", run_id, Status.OTHER)
    assert {entry.trace_id for entry in await stores.store.history(run_id)} == {""}


async def test_compensation_is_a_span_of_the_run_linked_to_its_caller(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    undone: list[str] = []

    async def undo(r: Run[Obj, Status]) -> None:
        undone.append(r.status.name)

    async def step(r: Run[Obj, Status]) -> Status:
        return Status.MIDDLE if r.status == Status.STARTED else Status.END

    async def confirmed(r: Run[Obj, Status], payload: bytes) -> Status:
        return Status.OTHER

    b = Builder("traced", Obj, Status)
    b.add_step(Status.STARTED, step, Status.MIDDLE, polling_frequency=FAST)
    b.add_step(Status.MIDDLE, step, Status.END, polling_frequency=FAST)
    b.add_callback(Status.END, confirmed, Status.OTHER)  # END waits
    b.add_compensation(Status.MIDDLE, undo)
    wf = Stores().build(b, tracing=Tracing(provider=provider))
    async with wf:
        run_id = await wf.trigger("o-1", initial_value=Obj(id="o-1"))
        await wf.await_status("o-1", run_id, Status.END)
        with provider.get_tracer("app").start_as_current_span("refund") as refund:
            await wf.compensate(run_id, "refunded")
    spans = by_name(exporter.get_finished_spans())
    span = spans["compensate traced END"]
    assert undone == ["MIDDLE"]
    assert span.parent is not None
    assert span.parent.span_id == span_id(spans["trigger traced STARTED"])
    [link] = span.links
    assert link.context.span_id == refund.get_span_context().span_id
    assert attributes(span)["luno_wf.next_run_state"] == "CANCELLED"
