"""Prometheus metrics, pinned as luno's metrics_test.go pins them (spec §9.1).

Each test reports into its own registry and reads samples with ``get_sample_value``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from luno_wf import (
    API,
    Builder,
    ConnectorEvent,
    Header,
    Meta,
    ProcessState,
    Record,
    Run,
    RunState,
    TypedRecord,
    delete_topic,
    duration_timer,
    topic,
)
from luno_wf._metrics import NO_METRICS
from luno_wf._workflow import engine_of
from luno_wf.memory import MemConnector, MemRoleScheduler
from luno_wf.metrics import LATENCY_BUCKETS, Metrics, SkipReason, default_metrics
from luno_wf.testing import FakeClock, await_timeout_insert

from .support import FAST, Obj, Status, Stores


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def eventually(read: Callable[[], float | None], want: float, timeout: float = 5.0) -> None:
    """Wait until ``read()`` returns ``want``; fail naming the last value read."""
    got = read()
    try:
        async with asyncio.timeout(timeout):
            while got != want:
                await asyncio.sleep(0.005)
                got = read()
    except TimeoutError:
        raise AssertionError(f"expected {want}, still {got} after {timeout}s") from None


def obj_bytes(obj: Obj) -> bytes:
    return json.dumps({"id": obj.id, "count": obj.count, "note": obj.note}).encode()


def record(
    clock: FakeClock,
    run_id: str,
    *,
    status: Status = Status.STARTED,
    run_state: RunState = RunState.INITIATED,
    version: int = 1,
    object: bytes | None = None,
) -> Record:
    now = clock.now()
    return Record(
        workflow_name="wf",
        foreign_id=f"f-{run_id}",
        run_id=run_id,
        run_state=run_state,
        status=int(status),
        object=obj_bytes(Obj(id=run_id)) if object is None else object,
        created_at=now,
        updated_at=now,
        meta=Meta(status_description=status.name, version=version),
    )


async def end(r: Run[Obj, Status]) -> Status:
    return Status.END


async def middle(r: Run[Obj, Status]) -> Status:
    return Status.MIDDLE


async def skip(r: Run[Obj, Status]) -> Status:
    return r.skip()


def two_steps() -> Builder[Obj, Status]:
    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, middle, Status.MIDDLE)
    b.add_step(Status.MIDDLE, end, Status.END)
    return b


STARTED = "started-consumer-1-of-1"
MIDDLE = "middle-consumer-1-of-1"


async def test_outbox_lag_of_a_record_stored_an_hour_before_run_reads_3600() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    s = Stores(clock=clock)
    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, skip, Status.MIDDLE)
    wf = s.build(b, metrics=Metrics(registry))
    await s.store.store(record(clock, "r1"))  # its outbox row is stamped now
    clock.advance(timedelta(hours=1))
    async with wf:

        def skipped() -> float | None:
            return sample(
                registry,
                "workflow_process_skipped_events_count_total",
                workflow_name="wf",
                process_name=STARTED,
                reason="next value specified skip",
            )

        await eventually(skipped, 1.0)
        lag = "workflow_process_lag_seconds"
        alert = "workflow_process_lag_alert"
        assert sample(registry, lag, workflow_name="wf", process_name="outbox-consumer") == 3600
        # The streamer stamped the event with the same clock when it was published.
        assert sample(registry, lag, workflow_name="wf", process_name=STARTED) == 0
        # The outbox alerts past a minute, a step past 30 minutes (luno's defaults).
        assert sample(registry, alert, workflow_name="wf", process_name="outbox-consumer") == 1
        assert sample(registry, alert, workflow_name="wf", process_name=STARTED) == 0


async def test_lag_alert_gauge_is_absent_when_the_lag_alert_is_zero() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    s = Stores(clock=clock)
    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, skip, Status.MIDDLE, lag_alert=timedelta(0))
    wf = s.build(b, metrics=Metrics(registry))
    async with wf:
        await wf.trigger("f")
        await eventually(
            lambda: sample(
                registry, "workflow_process_lag_seconds", workflow_name="wf", process_name=STARTED
            ),
            0.0,
        )
        # luno leaves the alert gauge untouched when the alert is off; the default is 30m.
        assert (
            sample(registry, "workflow_process_lag_alert", workflow_name="wf", process_name=STARTED)
            is None
        )


async def test_lag_on_the_wall_clock_is_the_time_from_publication_to_pick_up() -> None:
    registry = CollectorRegistry()
    s = Stores()
    gate = asyncio.Event()

    async def wait(r: Run[Obj, Status]) -> Status:
        await gate.wait()
        return Status.MIDDLE

    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, wait, Status.MIDDLE)
    b.add_step(Status.MIDDLE, end, Status.END)
    async with s.build(b, metrics=Metrics(registry)) as wf:
        run_id = await wf.trigger("f")
        await asyncio.sleep(0.2)  # the MIDDLE consumer is idle meanwhile, STARTED is busy
        gate.set()
        await wf.await_status("f", run_id, Status.END)
        # The MIDDLE event was taken at once; the reading stays what it was at pick-up,
        # however long after it is scraped.
        await asyncio.sleep(0.5)
        lag = sample(
            registry, "workflow_process_lag_seconds", workflow_name="wf", process_name=MIDDLE
        )
        assert lag is not None
        assert 0 <= lag < 0.4


class GatedScheduler:
    """Grants roles only once opened (a MemRoleScheduler behind a gate)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.inner = MemRoleScheduler()

    @contextlib.asynccontextmanager
    async def await_role(self, role: str) -> AsyncIterator[None]:
        await self.open.wait()
        async with self.inner.await_role(role):
            yield


async def test_process_states_are_idle_until_roles_are_granted_then_running_then_shutdown() -> None:
    registry = CollectorRegistry()
    s = Stores()
    scheduler = GatedScheduler()
    wf = two_steps().build(s.streamer, s.store, scheduler, metrics=Metrics(registry))
    names = ["outbox-consumer", STARTED, MIDDLE, "delete-consumer", "paused-records-retry-consumer"]

    def states() -> list[float | None]:
        return [
            sample(registry, "workflow_process_states", workflow_name="wf", process_name=name)
            for name in names
        ]

    async with wf:
        assert set(wf.states()) == set(names)
        assert states() == [float(ProcessState.IDLE)] * len(names)  # 3
        scheduler.open.set()
        await eventually(lambda: float(states().count(ProcessState.RUNNING)), len(names))  # 2
    assert states() == [float(ProcessState.SHUTDOWN)] * len(names)  # 1


async def test_a_failing_step_counts_process_errors() -> None:
    registry = CollectorRegistry()
    s = Stores()

    async def fail(r: Run[Obj, Status]) -> Status:
        raise RuntimeError("boom")

    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, fail, Status.MIDDLE, err_backoff=FAST)
    async with s.build(b, metrics=Metrics(registry)) as wf:
        await wf.trigger("f")

        def errors() -> float | None:
            return sample(
                registry,
                "workflow_process_error_count_total",
                workflow_name="wf",
                process_name=STARTED,
            )

        await eventually(lambda: min(errors() or 0.0, 2.0), 2.0)
        # A failed event is not a handled one: no latency observed for it.
        assert (
            sample(
                registry,
                "workflow_process_latency_seconds_count",
                workflow_name="wf",
                process_name=STARTED,
            )
            == 0
        )
    # Processes that never failed report zero rather than nothing.
    assert (
        sample(
            registry,
            "workflow_process_error_count_total",
            workflow_name="wf",
            process_name="outbox-consumer",
        )
        == 0
    )


async def test_latency_is_observed_per_handled_event_in_luno_buckets() -> None:
    registry = CollectorRegistry()
    s = Stores()

    async def slow(r: Run[Obj, Status]) -> Status:
        await asyncio.sleep(0.03)
        return Status.MIDDLE

    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, slow, Status.MIDDLE)
    b.add_step(Status.MIDDLE, end, Status.END)
    async with s.build(b, metrics=Metrics(registry)) as wf:
        for i in range(3):
            run_id = await wf.trigger(f"f{i}")
            await wf.await_status(f"f{i}", run_id, Status.END)
        latency = "workflow_process_latency_seconds"
        slow_labels = {"workflow_name": "wf", "process_name": STARTED}
        await eventually(lambda: registry.get_sample_value(f"{latency}_count", slow_labels), 3.0)
        bucket = f"{latency}_bucket"
        # 30 ms: above the 0.01 bucket, within 0.1.
        assert registry.get_sample_value(bucket, {**slow_labels, "le": "0.01"}) == 0
        assert registry.get_sample_value(bucket, {**slow_labels, "le": "0.1"}) == 3
        assert registry.get_sample_value(bucket, {**slow_labels, "le": "+Inf"}) == 3
        total = registry.get_sample_value(f"{latency}_sum", slow_labels)
        assert total is not None
        assert 0.09 <= total < 0.3
        fast_labels = {"workflow_name": "wf", "process_name": MIDDLE}
        await eventually(lambda: registry.get_sample_value(f"{latency}_count", fast_labels), 3.0)
        assert registry.get_sample_value(bucket, {**fast_labels, "le": "0.01"}) == 3
        # The outbox observes each batch it publishes.
        outbox = registry.get_sample_value(
            f"{latency}_count", {"workflow_name": "wf", "process_name": "outbox-consumer"}
        )
        assert outbox is not None
        assert outbox >= 1


async def send_event(s: Stores, topic_name: str, run_id: str, headers: dict[str, str]) -> None:
    sender = await s.streamer.new_sender(topic_name)
    await sender.send(run_id, 1, headers)
    await sender.close()


def skips(registry: CollectorRegistry, process_name: str, reason: SkipReason) -> float | None:
    return sample(
        registry,
        "workflow_process_skipped_events_count_total",
        workflow_name="wf",
        process_name=process_name,
        reason=str(reason),
    )


async def test_step_consumer_skip_reasons_are_luno_s() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    s = Stores(clock=clock)
    wf = s.build(two_steps(), metrics=Metrics(registry), pause_retry=None)
    started = topic("wf", Status.STARTED)
    async with wf:
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.END)  # now at version 3

        # No such run.
        await send_event(s, started, "no-such-run", {Header.RECORD_VERSION: "1"})
        await eventually(lambda: skips(registry, STARTED, SkipReason.RECORD_NOT_FOUND), 1.0)
        # A copy of the first event (version 1): the run has been written since.
        await send_event(s, started, run_id, {Header.RECORD_VERSION: "1"})
        await eventually(
            lambda: skips(registry, STARTED, SkipReason.EVENT_RECORD_VERSION_LOWER), 1.0
        )
        # An event without a version (an older writer's) for a run now at another status.
        await send_event(s, started, run_id, {})
        await eventually(
            lambda: skips(registry, STARTED, SkipReason.RECORD_STATUS_NOT_IN_EXPECTED_STATE), 1.0
        )
        # A paused run waiting at STARTED.
        await s.store.store(record(clock, "paused", run_state=RunState.PAUSED))
        await send_event(s, started, "paused", {Header.RECORD_VERSION: "1"})
        await eventually(lambda: skips(registry, STARTED, SkipReason.RECORD_STOPPED), 1.0)
    # Each situation was counted once, under its own reason only.
    for reason in (
        SkipReason.RECORD_NOT_FOUND,
        SkipReason.EVENT_RECORD_VERSION_LOWER,
        SkipReason.RECORD_STATUS_NOT_IN_EXPECTED_STATE,
        SkipReason.RECORD_STOPPED,
    ):
        assert skips(registry, STARTED, reason) == 1, reason
    assert skips(registry, STARTED, SkipReason.NEXT_VALUE_SPECIFIED_SKIP) is None


async def test_a_step_that_skips_counts_next_value_specified_skip() -> None:
    registry = CollectorRegistry()
    s = Stores()
    paused_in_step = asyncio.Event()

    async def skip_or_pause(r: Run[Obj, Status]) -> Status:
        if r.foreign_id == "pause":
            paused_in_step.set()
            return await r.pause("by the step")
        return r.skip()

    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, skip_or_pause, Status.MIDDLE)
    async with s.build(b, metrics=Metrics(registry), pause_retry=None) as wf:
        await wf.trigger("skip")
        await wf.trigger("pause")
        # Pausing from a step also leaves nothing for the engine to store (luno's -1).
        await eventually(
            lambda: skips(registry, STARTED, SkipReason.NEXT_VALUE_SPECIFIED_SKIP), 2.0
        )


async def test_a_write_racing_a_step_counts_the_event_as_outdated() -> None:
    registry = CollectorRegistry()
    s = Stores()
    entered = asyncio.Event()
    gate = asyncio.Event()

    async def wait(r: Run[Obj, Status]) -> Status:
        entered.set()
        await gate.wait()
        return Status.MIDDLE

    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, wait, Status.MIDDLE)
    async with s.build(b, metrics=Metrics(registry), pause_retry=None) as wf:
        run_id = await wf.trigger("f")
        await entered.wait()
        await wf.pause(run_id, "from the API meanwhile")
        gate.set()
        await eventually(
            lambda: skips(registry, STARTED, SkipReason.EVENT_RECORD_VERSION_LOWER), 1.0
        )
    assert (await s.store.lookup(run_id)).run_state == RunState.PAUSED
    # The step's refused write is not a run-state change; the pause is.
    assert changes(registry, "Running", "Paused") == 1
    assert changes(registry, "Running", "Running") is None


async def test_shards_count_the_events_they_leave_to_each_other_as_filtered_out() -> None:
    registry = CollectorRegistry()
    s = Stores()
    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, middle, Status.MIDDLE, parallel_count=2)
    async with s.build(b, metrics=Metrics(registry), pause_retry=None) as wf:
        for i in range(6):
            await wf.trigger(f"f{i}")

        def filtered() -> float:
            return sum(
                skips(registry, f"started-consumer-{shard}-of-2", SkipReason.FILTERED_OUT) or 0.0
                for shard in (1, 2)
            )

        # Each event reaches both shards and is kept by exactly one.
        await eventually(filtered, 6.0)


async def test_hook_and_delete_consumers_count_their_skips() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    s = Stores(clock=clock)
    seen: list[str] = []

    async def on_complete(r: TypedRecord[Obj, Status]) -> None:
        seen.append(r.run_id)

    b = two_steps()
    b.on_complete(on_complete)
    hook = "completed-run-state-change-hook-consumer"
    async with s.build(b, metrics=Metrics(registry), pause_retry=None) as wf:
        # A completed run whose object no longer decodes reaches the hook.
        await s.store.store(
            record(clock, "garbled", status=Status.END, run_state=RunState.COMPLETED, object=b"{")
        )
        await eventually(lambda: skips(registry, hook, SkipReason.UNABLE_TO_UNMARSHAL_OBJECT), 1.0)
        # A deletion request for a run that does not exist.
        await send_event(s, delete_topic("wf"), "no-such-run", {})
        await eventually(
            lambda: skips(registry, "delete-consumer", SkipReason.RECORD_NOT_FOUND), 1.0
        )
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.END)
        await eventually(lambda: float(len(seen)), 1.0)
    assert seen == [run_id]


async def test_timeout_poller_reports_latency_skips_and_errors() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    s = Stores(clock=clock)
    calls: list[str] = []

    async def fire(r: Run[Obj, Status], now: datetime) -> Status:
        calls.append(r.foreign_id)
        if r.foreign_id == "fail":
            raise RuntimeError("timeout function failed")
        return r.skip()

    b = Builder("wf", Obj, Status)
    b.add_timeout(
        Status.STARTED,
        duration_timer(timedelta(hours=1)),
        fire,
        Status.MIDDLE,
        polling_frequency=FAST,
        err_backoff=timedelta(hours=1),
    )
    poller = "started-timeout-consumer"
    async with s.build(b, metrics=Metrics(registry)) as wf:
        for foreign_id in ("skip", "fail"):
            run_id = await wf.trigger(foreign_id)
            await await_timeout_insert(wf, foreign_id, run_id, Status.STARTED)
        clock.advance(timedelta(hours=1))
        await eventually(lambda: float(len(calls)), 2.0)
        await eventually(lambda: skips(registry, poller, SkipReason.NEXT_VALUE_SPECIFIED_SKIP), 1.0)
        errors = "workflow_process_error_count_total"
        await eventually(
            lambda: sample(registry, errors, workflow_name="wf", process_name=poller), 1.0
        )
        # Both calls were timed, the failed one too (as luno does).
        assert (
            sample(
                registry,
                "workflow_process_latency_seconds_count",
                workflow_name="wf",
                process_name=poller,
            )
            == 2
        )
        # The inserter is a consume loop: its events are timed.
        await eventually(
            lambda: sample(
                registry,
                "workflow_process_latency_seconds_count",
                workflow_name="wf",
                process_name="started-timeout-auto-inserter-consumer",
            ),
            2.0,
        )


def changes(registry: CollectorRegistry, previous: str, current: str) -> float | None:
    return sample(
        registry,
        "workflow_run_state_changes_total",
        workflow_name="wf",
        previous_run_state=previous,
        current_run_state=current,
    )


async def test_run_state_changes_are_counted_with_luno_s_names() -> None:
    registry = CollectorRegistry()
    s = Stores()
    async with s.build(two_steps(), metrics=Metrics(registry), pause_retry=None) as wf:
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.END)
        await wf.delete_data(run_id, "gdpr")
        for _ in range(500):
            if (await s.store.lookup(run_id)).run_state == RunState.DATA_DELETED:
                break
            await asyncio.sleep(0.01)
    assert changes(registry, "Unknown", "Initiated") == 1  # trigger
    assert changes(registry, "Running", "Running") == 1  # STARTED -> MIDDLE
    assert changes(registry, "Running", "Completed") == 1  # MIDDLE -> END (terminal)
    assert changes(registry, "Completed", "Requested Data Deleted") == 1
    assert changes(registry, "Requested Data Deleted", "Data Deleted") == 1
    assert changes(registry, "Initiated", "Running") is None  # only moves that happened


async def test_run_state_changes_of_pause_resume_and_cancel() -> None:
    registry = CollectorRegistry()
    s = Stores()
    attempts: list[int] = []

    async def pause_then_cancel(r: Run[Obj, Status]) -> Status:
        attempts.append(1)
        if len(attempts) == 1:
            return await r.pause("first look")
        return await r.cancel("second look")

    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, pause_then_cancel, Status.MIDDLE)
    async with s.build(b, metrics=Metrics(registry), pause_retry=None) as wf:
        run_id = await wf.trigger("f")
        await eventually(lambda: changes(registry, "Running", "Paused"), 1.0)
        await wf.resume(run_id)
        await eventually(lambda: changes(registry, "Running", "Cancelled"), 1.0)
    assert changes(registry, "Paused", "Running") == 1
    assert changes(registry, "Unknown", "Initiated") == 1


async def test_exposition_has_luno_s_names_kinds_and_buckets() -> None:
    registry = CollectorRegistry()
    s = Stores()
    async with s.build(two_steps(), metrics=Metrics(registry)) as wf:
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.END)
    text = generate_latest(registry).decode()
    kinds = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    assert kinds == {
        "workflow_process_lag_seconds": "gauge",
        "workflow_process_lag_alert": "gauge",
        "workflow_process_states": "gauge",
        "workflow_process_latency_seconds": "histogram",
        # prometheus_client's counters: the family and its samples carry "_total".
        "workflow_process_error_count_total": "counter",
        "workflow_process_skipped_events_count_total": "counter",
        "workflow_run_state_changes_total": "counter",
    }
    les = re.findall(
        r'^workflow_process_latency_seconds_bucket\{le="([^"]+)",'
        r'process_name="started-consumer-1-of-1"',
        text,
        re.MULTILINE,
    )
    # luno's buckets, written as a prometheus_client Histogram writes them.
    assert les == ["0.01", "0.1", "1.0", "5.0", "10.0", "60.0", "300.0", "+Inf"]
    assert len(les) == len(LATENCY_BUCKETS) + 1
    assert "_created" not in text


async def test_workflows_report_to_the_default_registry_unless_told_otherwise() -> None:
    s = Stores()
    b = Builder("metrics default registry", Obj, Status)
    b.add_step(Status.STARTED, end, Status.END)
    async with s.build(b) as wf:
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.END)
    assert default_metrics() is default_metrics()
    assert default_metrics().registry is REGISTRY
    labels = {
        "workflow_name": "metrics default registry",
        "previous_run_state": "Unknown",
        "current_run_state": "Initiated",
    }
    assert REGISTRY.get_sample_value("workflow_run_state_changes_total", labels) == 1


async def test_metrics_can_be_switched_off() -> None:
    s = Stores()
    b = Builder("metrics switched off", Obj, Status)
    b.add_step(Status.STARTED, end, Status.END)
    wf = s.build(b, metrics=False)
    assert engine_of(wf).metrics is NO_METRICS
    async with wf:
        run_id = await wf.trigger("f")
        await wf.await_status("f", run_id, Status.END)
    assert not any(
        sample.labels.get("workflow_name") == "metrics switched off"
        for family in REGISTRY.collect()
        for sample in family.samples
    )


def test_wrong_metrics_arguments_are_refused() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)
    with pytest.raises(TypeError, match="CollectorRegistry"):
        Metrics("registry")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="False \\(no metrics\\)"):
        Stores().build(two_steps(), metrics=None)


async def test_connector_consumers_report_lag_filtered_events_and_latency() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    s = Stores(clock=clock)
    published = clock.now() - timedelta(minutes=10)
    seen: list[str] = []

    async def on_event(api: API[Obj, Status], event: ConnectorEvent) -> None:
        seen.append(event.id)

    b = two_steps()
    connector = MemConnector(
        ConnectorEvent(id=str(i), foreign_id=f"ext-{i}", type="created", created_at=published)
        for i in range(1, 11)
    )
    b.add_connector("feed", connector, on_event, parallel_count=2)
    shards = [f"feed-connector-to-wf-consumer-{shard}-of-2" for shard in (1, 2)]
    async with s.build(b, metrics=Metrics(registry)):
        await eventually(lambda: float(len(seen)), 10.0)

        def total(name: str, **labels: str) -> float:
            return sum(
                sample(registry, name, workflow_name="wf", process_name=shard, **labels) or 0.0
                for shard in shards
            )

        # Every event reaches both shards and is handled by exactly one.
        await eventually(
            lambda: total(
                "workflow_process_skipped_events_count_total", reason=str(SkipReason.FILTERED_OUT)
            ),
            10.0,
        )
        await eventually(lambda: total("workflow_process_latency_seconds_count"), 10.0)
    for shard in shards:
        assert (
            sample(registry, "workflow_process_lag_seconds", workflow_name="wf", process_name=shard)
            == 600
        )
