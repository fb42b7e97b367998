"""Benchmark: a 3-step workflow on the in-memory adapters.

Prints steps/s and runs/s with N runs in flight, trigger-to-complete p50/p99 of single runs,
and beside them the rate of a bare loop doing the same serialise/deserialise work with no
engine, so the engine's own overhead shows as a ratio.

    python bench/memory.py [--runs 10000] [--latency-runs 500] [--tracing off|api|sdk]

``--tracing``: ``off`` builds with ``tracing=False``; ``api`` (the default) is what a user
with opentelemetry-api installed but no tracer provider set gets; ``sdk`` sets an SDK
provider whose simple (synchronous) processor hands every span to an exporter that drops
it: the figure is the cost of making and ending the spans, not of sending them.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import os
import statistics
import time
from collections.abc import Sequence

import attrs

from luno_wf import (
    Builder,
    Meta,
    Record,
    Run,
    RunState,
    Workflow,
    filter_by_run_state,
    make_outbox_event,
)
from luno_wf._converter import Codec
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer

try:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
except ImportError:  # --tracing sdk needs opentelemetry-sdk
    trace = None  # type: ignore[assignment]
else:

    class DropExporter(SpanExporter):
        """Takes every span and sends it nowhere."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS


class Status(enum.IntEnum):
    UNKNOWN = 0
    STARTED = 1
    CHARGED = 2
    SHIPPED = 3
    DONE = 4


@attrs.define
class Order:
    id: str
    amount: int = 0
    steps: int = 0


TRACING = {"tracing": True}  # build(tracing=...): False with --tracing off


def build(done: asyncio.Event | None, total: int) -> tuple[Workflow[Order, Status], MemRecordStore]:
    finished = 0

    async def charge(r: Run[Order, Status]) -> Status:
        r.object.steps += 1
        return Status.CHARGED

    async def ship(r: Run[Order, Status]) -> Status:
        r.object.steps += 1
        return Status.SHIPPED

    async def finish(r: Run[Order, Status]) -> Status:
        nonlocal finished
        r.object.steps += 1
        finished += 1
        if done is not None and finished == total:
            done.set()
        return Status.DONE

    b = Builder("bench", Order, Status)
    b.add_step(Status.STARTED, charge, Status.CHARGED)
    b.add_step(Status.CHARGED, ship, Status.SHIPPED)
    b.add_step(Status.SHIPPED, finish, Status.DONE)
    store = MemRecordStore()
    wf = b.build(
        MemStreamer(), store, MemRoleScheduler(), pause_retry=None, tracing=TRACING["tracing"]
    )
    return wf, store


async def throughput(runs: int) -> tuple[float, float]:
    done = asyncio.Event()
    wf, store = build(done, runs)
    async with wf:
        start = time.perf_counter()
        for i in range(runs):
            await wf.trigger(f"order-{i}", initial_value=Order(id=f"order-{i}", amount=i))
        await done.wait()
        elapsed = time.perf_counter() - start
        # The last step's write follows its function with no await in between (memory
        # store), so every run is stored DONE by now: check, so the figure is honest.
        completed = await store.list(
            "bench", limit=runs, filters=[filter_by_run_state(RunState.COMPLETED)]
        )
        if len(completed) != runs:
            raise RuntimeError(f"only {len(completed)} of {runs} runs completed")
    return elapsed, runs * 3 / elapsed


async def latency(samples: int) -> list[float]:
    wf, _ = build(None, 0)
    out = []
    async with wf:
        for i in range(samples):
            start = time.perf_counter()
            run_id = await wf.trigger(f"single-{i}", initial_value=Order(id=str(i)))
            await wf.await_status(f"single-{i}", run_id, Status.DONE)
            out.append((time.perf_counter() - start) * 1000)
    return out


def bare_loop(steps: int) -> float:
    """The same per-step serialisation work with no engine: decode, mutate, encode, outbox."""
    codec = Codec(Order)
    now = time.time
    from datetime import UTC, datetime

    stamp = datetime.now(UTC)
    record = Record(
        workflow_name="bench",
        foreign_id="order",
        run_id="run",
        run_state=RunState.RUNNING,
        status=1,
        object=codec.encode(Order(id="order")),
        created_at=stamp,
        updated_at=stamp,
        meta=Meta(version=1),
    )
    start = now()
    for _ in range(steps):
        obj = codec.decode(record.object)
        obj.steps += 1
        record = attrs.evolve(
            record,
            object=codec.encode(obj),
            meta=attrs.evolve(record.meta, version=record.meta.version + 1),
        )
        make_outbox_event(record)
    return steps / (now() - start)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


TRACING_LABELS = {
    "off": "off (build(tracing=False))",
    "api": "opentelemetry-api, no provider set",
    "sdk": "SDK provider, simple processor, dropping exporter",
}


def set_up_tracing(mode: str) -> TracerProvider | None:
    """Set the global tracer provider for ``sdk``; turn tracing off for ``off``."""
    if mode == "off":
        TRACING["tracing"] = False
        return None
    if mode == "api":
        return None
    if trace is None:
        raise SystemExit("--tracing sdk needs opentelemetry-sdk installed")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DropExporter()))
    trace.set_tracer_provider(provider)
    return provider


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--latency-runs", type=int, default=500)
    parser.add_argument("--tracing", choices=("off", "api", "sdk"), default="api")
    args = parser.parse_args()
    provider = set_up_tracing(args.tracing)

    elapsed, steps_per_s = asyncio.run(throughput(args.runs))
    lat = asyncio.run(latency(args.latency_runs))
    bare = bare_loop(args.runs * 3)
    if provider is not None:
        provider.shutdown()
    print(f"luno_wf memory benchmark ({os.cpu_count()} cores)")
    print(f"  tracing                  {TRACING_LABELS[args.tracing]}")
    print(f"  runs in flight           {args.runs}")
    print(f"  elapsed                  {elapsed:.2f} s")
    print(f"  steps/s                  {steps_per_s:,.0f}")
    print(f"  runs/s                   {steps_per_s / 3:,.0f}")
    print(f"  trigger->complete p50    {pct(lat, 50):.2f} ms  ({args.latency_runs} single runs)")
    print(f"  trigger->complete p99    {pct(lat, 99):.2f} ms")
    print(f"  bare serialise loop      {bare:,.0f} steps/s")
    print(f"  engine / bare            {steps_per_s / bare:.2f}")


if __name__ == "__main__":
    main()
