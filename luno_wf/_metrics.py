"""Prometheus metrics: luno/workflow's seven series, in a registry the user chooses.

The engine updates plain Python numbers (an attribute write, a list increment) and
:class:`Metrics`, a ``prometheus_client`` collector, turns them into metric families when
the registry is scraped. ``prometheus_client``'s own metric objects take a lock and make
several calls per update, which costs the in-memory engine about a tenth of its speed at
the rate it updates them (several times per step); this costs about a fortieth.
"""

from __future__ import annotations

import enum
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from time import monotonic

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ._clock import Clock, SystemClock
from ._runstate import RunState

__all__ = [
    "LATENCY_BUCKETS",
    "NO_METRICS",
    "Metrics",
    "MetricsSink",
    "ProcessMetrics",
    "SkipReason",
    "default_metrics",
]

LATENCY_BUCKETS = (0.01, 0.1, 1.0, 5.0, 10.0, 60.0, 300.0)
"""Upper bounds (seconds) of ``workflow_process_latency_seconds``, as luno's (+Inf added)."""

# The ``le`` label values, written as prometheus_client writes them ("1.0", "+Inf").
_LE = [repr(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
_PROCESS = ("workflow_name", "process_name")
_RUN_STATES = tuple(RunState)

LAG_SECONDS = "workflow_process_lag_seconds"
LAG_ALERT = "workflow_process_lag_alert"
STATES = "workflow_process_states"
LATENCY_SECONDS = "workflow_process_latency_seconds"
ERROR_COUNT = "workflow_process_error_count"
SKIPPED_EVENTS_COUNT = "workflow_process_skipped_events_count"
RUN_STATE_CHANGES = "workflow_run_state_changes"

_HELP = {
    LAG_SECONDS: "Seconds from an event's publication (or an outbox row's write) to its pick-up",
    LAG_ALERT: "1 while a process's lag exceeds its lag alert threshold, else 0",
    STATES: "State of each process: 0 unknown, 1 shutdown, 2 running, 3 idle",
    LATENCY_SECONDS: "Seconds a process spent handling an event (outbox: publishing a batch)",
    ERROR_COUNT: "Errors that made a process back off",
    SKIPPED_EVENTS_COUNT: "Events a process acked without acting on them, by reason",
    RUN_STATE_CHANGES: "Runs stored in a run state, by the run state they left",
}


class SkipReason(enum.StrEnum):
    """The ``reason`` label of ``workflow_process_skipped_events_count`` (luno's exact text)."""

    FILTERED_OUT = "filtered out"
    """A shard or run-state filter left the event to another consumer."""
    RECORD_NOT_FOUND = "record not found"
    """The event names a run the store does not have."""
    RECORD_STATUS_NOT_IN_EXPECTED_STATE = "record status not in expected state"
    """The run is no longer at the status the consumer handles."""
    EVENT_RECORD_VERSION_LOWER = "event record version lower than latest record version"
    """The run was written since the event was published (a stale or duplicate event)."""
    RECORD_STOPPED = "record stopped"
    """The run is paused, cancelled or deleted."""
    NEXT_VALUE_SPECIFIED_SKIP = "next value specified skip"
    """The step or timeout function returned ``run.skip()`` (or paused or cancelled the run)."""
    UNABLE_TO_UNMARSHAL_OBJECT = "unable to unmarshal object"
    """A hook's run object could not be decoded."""
    SET_ASIDE = "event set aside"
    """A poison event was set aside as a dead letter (luno_wf's own reason)."""


class ProcessMetrics:
    """The series of one process (internal): plain numbers the engine updates in place.

    Invariant: only the event loop running the process writes them; a scrape (maybe from
    another thread) only reads, so a reading is at worst one update behind.
    """

    __slots__ = (
        "alert_after",
        "buckets",
        "errors",
        "lag",
        "latency_sum",
        "picked",
        "skipped",
        "state",
    )

    def __init__(self) -> None:
        self.state = 0
        self.errors = 0
        self.lag: float | None = None  # no series until the first event, as in luno
        # (publication time, monotonic time) of the last event taken on the wall clock:
        # its lag is worked out when scraped (see lag_recorder).
        self.picked: tuple[datetime, float] | None = None
        self.alert_after = 0.0  # lag alert threshold in seconds; 0: no alert series
        self.buckets = [0] * len(_LE)  # per bucket, not cumulative; the last is +Inf
        self.latency_sum = 0.0
        self.skipped: dict[str, int] = {}

    def lag_recorder(self, clock: Clock, lag_alert: timedelta) -> Callable[[datetime], None]:
        """The function to call with each event's publication time as the process takes it.

        On the wall clock it keeps that time and a monotonic reading, and the lag is worked
        out on scrape: the pick-up moment is the scrape's wall time less the monotonic time
        since. Reading the wall clock for every event instead costs the in-memory engine
        about 3 % of its speed. On any other clock (a ``FakeClock``) the clock is read at
        once, so the lag is exactly the clock's.
        """
        self.alert_after = max(lag_alert.total_seconds(), 0.0)
        if type(clock) is SystemClock:

            def on_wall_clock(created_at: datetime) -> None:
                self.picked = (created_at, monotonic())

            return on_wall_clock

        def on_clock(created_at: datetime) -> None:
            self.lag = (clock.now() - created_at).total_seconds()
            self.picked = None

        return on_clock

    def lag_seconds(self) -> float | None:
        """The last event's lag, None before the first."""
        picked = self.picked
        if picked is None:
            return self.lag
        created_at, at = picked
        return (datetime.now(UTC) - created_at).total_seconds() - (monotonic() - at)

    def observe(self, seconds: float) -> None:
        """Add a latency observation."""
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def skip(self, reason: SkipReason) -> None:
        """Count an event skipped for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class _NullProcessMetrics(ProcessMetrics):
    """Series nobody reads: what every process reports to when metrics are off.

    The engine updates it exactly as it updates real series, so that "metrics off" is not
    a branch in every handler; its methods do nothing.
    """

    __slots__ = ()

    def lag_recorder(self, clock: Clock, lag_alert: timedelta) -> Callable[[datetime], None]:
        return _ignore

    def observe(self, seconds: float) -> None:
        return None

    def skip(self, reason: SkipReason) -> None:
        return None


def _ignore(_: datetime) -> None:
    return None


class MetricsSink:
    """Where the engine reports (internal): a :class:`Metrics`, or nowhere.

    ``NO_METRICS``, the instance of this class itself, hands out series that are never
    collected, so the engine reports unconditionally.
    """

    def process(self, workflow_name: str, process_name: str) -> ProcessMetrics:
        """The series of one process."""
        return _NullProcessMetrics()

    def run_state_changes(self, workflow_name: str) -> list[list[int]]:
        """One workflow's run-state change counts, ``[previous][current]``."""
        return [[0] * len(_RUN_STATES) for _ in _RUN_STATES]


NO_METRICS = MetricsSink()
"""The sink of a workflow built with ``metrics=False``."""


class Metrics(MetricsSink):
    """The Prometheus metrics of luno_wf workflows, as a collector in one registry.

    Pass one to ``Builder.build(metrics=...)``. Every workflow given the same instance
    reports into the same series, told apart by the ``workflow_name`` label (like luno's
    global metrics). A registry holds at most one instance: for ``prometheus_client``'s
    default registry use :func:`default_metrics`, which ``build`` uses unless told
    otherwise.

    The series are luno/workflow's, with its names, kinds, labels and buckets:
    ``workflow_process_lag_seconds``, ``workflow_process_lag_alert``,
    ``workflow_process_states`` (gauges), ``workflow_process_latency_seconds`` (histogram),
    ``workflow_process_error_count``, ``workflow_process_skipped_events_count``,
    ``workflow_run_state_changes`` (counters, whose samples carry the ``_total`` suffix
    that ``prometheus_client`` gives every counter). See ``docs/metrics.md``.

    Args:
        registry: Where to register; the metrics appear in whatever serves it.

    Raises:
        ValueError: ``registry`` already holds these metric names (another ``Metrics``).

    """

    def __init__(self, registry: CollectorRegistry) -> None:
        if not isinstance(registry, CollectorRegistry):
            raise TypeError(
                f"registry must be a prometheus_client CollectorRegistry, got {registry!r}"
            )
        self.registry = registry
        self._processes: dict[tuple[str, str], ProcessMetrics] = {}
        # workflow name -> run-state change counts, indexed [previous][current]
        self._workflows: dict[str, list[list[int]]] = {}
        registry.register(self)

    def __repr__(self) -> str:
        return f"<Metrics registry={self.registry!r}>"

    def process(self, workflow_name: str, process_name: str) -> ProcessMetrics:
        """The series of one process, made on first use (internal: the engine's)."""
        key = (workflow_name, process_name)
        found = self._processes.get(key)
        if found is None:
            found = self._processes.setdefault(key, ProcessMetrics())
        return found

    def run_state_changes(self, workflow_name: str) -> list[list[int]]:
        """One workflow's run-state change counts, ``[previous][current]`` (internal)."""
        found = self._workflows.get(workflow_name)
        if found is None:
            counts = [[0] * len(_RUN_STATES) for _ in _RUN_STATES]
            found = self._workflows.setdefault(workflow_name, counts)
        return found

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (the registry checks names with it)."""
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        """The metric families with every series' current value (called on each scrape)."""
        lag, alert, states, latency, errors, skipped, changes = families = _families()
        # Copies made in one step each: a scrape from another thread never iterates a dict
        # the event loop is adding to.
        for (workflow_name, process_name), p in list(self._processes.items()):
            labels = (workflow_name, process_name)
            states.add_metric(labels, float(p.state))
            seconds = p.lag_seconds()
            if seconds is not None:
                lag.add_metric(labels, seconds)
                if p.alert_after:
                    alert.add_metric(labels, 1.0 if seconds > p.alert_after else 0.0)
            errors.add_metric(labels, float(p.errors))
            cumulative = []
            total = 0
            for le, count in zip(_LE, p.buckets[:], strict=True):
                total += count
                cumulative.append((le, float(total)))
            latency.add_metric(labels, cumulative, p.latency_sum)
            for reason, count in list(p.skipped.items()):
                skipped.add_metric((*labels, str(reason)), float(count))
        for workflow_name, counts in list(self._workflows.items()):
            for previous, row in zip(_RUN_STATES, counts, strict=True):
                for current, count in zip(_RUN_STATES, row[:], strict=True):
                    if count:
                        changes.add_metric(
                            (workflow_name, str(previous), str(current)), float(count)
                        )
        return iter(families)


def _families() -> tuple[
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
]:
    return (
        GaugeMetricFamily(LAG_SECONDS, _HELP[LAG_SECONDS], labels=_PROCESS),
        GaugeMetricFamily(LAG_ALERT, _HELP[LAG_ALERT], labels=_PROCESS),
        GaugeMetricFamily(STATES, _HELP[STATES], labels=_PROCESS),
        HistogramMetricFamily(LATENCY_SECONDS, _HELP[LATENCY_SECONDS], labels=_PROCESS),
        CounterMetricFamily(ERROR_COUNT, _HELP[ERROR_COUNT], labels=_PROCESS),
        CounterMetricFamily(
            SKIPPED_EVENTS_COUNT, _HELP[SKIPPED_EVENTS_COUNT], labels=(*_PROCESS, "reason")
        ),
        CounterMetricFamily(
            RUN_STATE_CHANGES,
            _HELP[RUN_STATE_CHANGES],
            labels=("workflow_name", "previous_run_state", "current_run_state"),
        ),
    )


_default: Metrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> Metrics:
    """The process-wide :class:`Metrics` in ``prometheus_client.REGISTRY``, made on first use.

    luno/workflow registers its metrics globally; this is that registration. Whatever
    serves the default registry (``prometheus_client.start_http_server``,
    ``make_asgi_app()``, ...) then exposes every workflow built with the default
    ``metrics=True``.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics(REGISTRY)
        return _default
