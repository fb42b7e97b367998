"""The 3-step workflow the PostgreSQL and Kafka benchmarks measure, and how they measure it.

Imported by ``bench/postgres.py`` and ``bench/kafka.py`` (run as scripts, so this folder is
on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import enum
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from luno_wf import Builder, EventStreamer, RecordStore, RoleScheduler, Run, Workflow


class Status(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    FIRST = 2
    SECOND = 3
    DONE = 4


@attrs.define
class Job:
    n: int = 0
    note: str = ""


async def first(r: Run[Job, Status]) -> Status:
    r.object.note = "first"
    return Status.FIRST


async def second(r: Run[Job, Status]) -> Status:
    r.object.note = "second"
    return Status.SECOND


class Finished:
    """How many times the last step ran, and an event set once that reaches ``target``.

    The throughput phase waits on it rather than polling the store, whose queries would
    take CPU from the workflow being measured.
    """

    count = 0
    target = 0
    reached: asyncio.Event | None = None

    @classmethod
    def expect(cls, target: int) -> asyncio.Event:
        """Count from zero towards ``target``; the event to wait on."""
        cls.count, cls.target, cls.reached = 0, target, asyncio.Event()
        return cls.reached


async def third(r: Run[Job, Status]) -> Status:
    r.object.note = "done"
    Finished.count += 1
    if Finished.reached is not None and Finished.count >= Finished.target:
        Finished.reached.set()
    return Status.DONE


def build(
    name: str,
    streamer: EventStreamer,
    store: RecordStore,
    scheduler: RoleScheduler,
    build_options: dict[str, Any] | None = None,
    **options: Any,
) -> Workflow[Job, Status]:
    """The workflow CREATED -> FIRST -> SECOND -> DONE, each step with ``options``.

    Built with ``build()``'s defaults (history on, metrics on, paused runs retried) unless
    ``build_options`` says otherwise.
    """
    b = Builder(name, Job, Status)
    b.add_step(Status.CREATED, first, Status.FIRST, **options)
    b.add_step(Status.FIRST, second, Status.SECOND, **options)
    b.add_step(Status.SECOND, third, Status.DONE, **options)
    return b.build(streamer, store, scheduler, **(build_options or {}))


def percentile(sorted_ms: list[float], q: float) -> float:
    """The ``q`` quantile of an ascending list (nearest rank)."""
    return sorted_ms[min(len(sorted_ms) - 1, max(0, round(len(sorted_ms) * q) - 1))]


@attrs.frozen
class Rates:
    """What :func:`measure` found.

    ``cpu_ms_per_step`` is the CPU time of this process (user and system, every thread)
    per step in the throughput phase, triggers included; ``single_cpu_ms_per_step`` the
    same in the latency phase.
    """

    steps_per_s: float
    triggers_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_step: float = 0.0
    single_cpu_ms_per_step: float = 0.0


async def measure(
    wf: Workflow[Job, Status],
    count_done: Callable[[], Awaitable[int]],
    runs: int,
    single: int,
    *,
    poll: float,
) -> Rates:
    """Run ``wf`` (entered here) through a warm-up, a throughput and a latency phase.

    Throughput: ``runs`` runs triggered (16 triggers in flight at a time) and the time
    until ``count_done`` (runs at DONE) has grown by ``runs``: it is polled every ``poll``
    seconds only once the last step has run ``runs`` times. Latency: ``single`` runs one
    at a time, trigger to DONE as ``await_status`` sees it.
    """
    async with wf:
        # Warm up: every process holds its role and every statement is prepared.
        for i in range(20):
            run_id = await wf.trigger(f"warm-{i}", initial_value=Job(n=i))
            await wf.await_status(f"warm-{i}", run_id, Status.DONE)
        base = await count_done()
        finished = Finished.expect(runs)

        cpu = time.process_time()
        started = time.perf_counter()
        sem = asyncio.Semaphore(16)

        async def trigger(i: int) -> None:
            async with sem:
                await wf.trigger(f"job-{i}", initial_value=Job(n=i))

        await asyncio.gather(*(trigger(i) for i in range(runs)))
        triggered = time.perf_counter() - started
        await finished.wait()
        while True:
            if await count_done() - base >= runs:
                break
            await asyncio.sleep(poll)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu

        latencies = []
        single_cpu = time.process_time()
        for i in range(single):
            t0 = time.perf_counter()
            run_id = await wf.trigger(f"single-{i}", initial_value=Job(n=i))
            await wf.await_status(f"single-{i}", run_id, Status.DONE)
            latencies.append((time.perf_counter() - t0) * 1000)
        single_cpu = time.process_time() - single_cpu
    latencies.sort()
    return Rates(
        steps_per_s=3 * runs / elapsed,
        triggers_per_s=runs / triggered,
        p50_ms=statistics.median(latencies),
        p99_ms=percentile(latencies, 0.99),
        cpu_ms_per_step=1000 * cpu / (3 * runs),
        single_cpu_ms_per_step=1000 * single_cpu / (3 * max(single, 1)),
    )
