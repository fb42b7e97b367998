"""Helpers for testing your own workflows: a fake clock, waiting and asserting helpers.

Build the workflow under test on the in-memory adapters with a :class:`FakeClock` and a
:class:`TestingRecordStore`, then drive it::

    clock = FakeClock()
    wf = builder.build(MemStreamer(), TestingRecordStore(), MemRoleScheduler(),
                       timeout_store=MemTimeoutStore(), clock=clock)
    async with wf:
        run_id = await wf.trigger("order-1", initial_value=Order(id="order-1"))
        await await_timeout_insert(wf, "order-1", run_id, OrderStatus.AWAITING_PAYMENT)
        clock.advance(timedelta(minutes=30))
        await require(wf, "order-1", OrderStatus.CANCELLED, Order(id="order-1"))

Every waiting helper takes a ``timeout`` (seconds of real time) and fails with
``TimeoutError`` naming what it waited for, rather than hanging a test run.

The helpers take their types from ``wf`` alone: read ``S | NoInferStatus`` as ``S`` and
``T | NoInfer`` as ``T``. So mypy reports a status or object of another type against the
workflow's ("expected Order"), not as a type parameter it cannot infer.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from ._clock import Clock
from ._engine import Engine
from ._memory.recordstore import MemRecordStore
from ._record import Record
from ._run import Run, RunStateController
from ._runstate import RunState
from ._types import NoInfer, NoInferStatus, S, T
from ._workflow import Workflow, engine_of
from .errors import RecordNotFound

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from attrs import AttrsInstance

__all__ = [
    "await_timeout_insert",
    "FakeClock",
    "new_testing_run",
    "require",
    "TestingRecordStore",
    "trigger_callback_on",
    "wait_for",
]

_POLL = 0.002


class FakeClock(Clock):
    """A clock that moves only when told to.

    Pass it as ``build(clock=...)`` (and to the in-memory adapters). :meth:`advance` wakes
    everything waiting for a moment that has now passed: due timeouts fire, schedules
    trigger, consume lags end, with no real sleeping.

    Args:
        now: The starting time (aware); default 2025-01-01 00:00 UTC.

    """

    def __init__(self, now: datetime | None = None) -> None:
        start = now or datetime(2025, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError(f"FakeClock needs an aware datetime, got {start!r}")
        self._now = start
        self._seq = itertools.count()
        self._waiters: list[tuple[datetime, int, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        """The fake current time."""
        return self._now

    async def sleep_until(self, deadline: datetime) -> None:
        """Wait until the clock is advanced to ``deadline`` (return at once if it has been)."""
        if deadline <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (deadline, next(self._seq), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting for a moment this clock has not reached yet."""
        return sum(1 for _, _, future in self._waiters if not future.done())

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and wake what is now due; returns the new time."""
        if delta < timedelta(0):
            raise ValueError(f"FakeClock cannot go back in time: advance({delta})")
        return self.set(self._now + delta)

    def set(self, moment: datetime) -> datetime:
        """Move the clock forward to ``moment`` and wake what is now due."""
        if moment.tzinfo is None:
            raise ValueError(f"FakeClock needs an aware datetime, got {moment!r}")
        if moment < self._now:
            raise ValueError(f"FakeClock cannot go back in time: {moment} < {self._now}")
        self._now = moment
        while self._waiters and self._waiters[0][0] <= moment:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
        return moment


class TestingRecordStore(MemRecordStore):
    """A :class:`~luno_wf.memory.MemRecordStore` that also keeps every stored version."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._snapshots: dict[tuple[str, str, str], list[Record]] = {}

    def _store(self, record: Record) -> None:
        # Every write (store and store_many) goes through here; keep what it took.
        super()._store(record)
        key = (record.workflow_name, record.foreign_id, record.run_id)
        self._snapshots.setdefault(key, []).append(record)

    def snapshots(self, workflow_name: str, foreign_id: str, run_id: str) -> list[Record]:
        """Every stored version of the run, oldest first."""
        return list(self._snapshots.get((workflow_name, foreign_id, run_id), []))


async def _poll_until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await check()
        if found is not None:
            return found
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(_POLL)


async def _versions(engine: Engine[Any, Any], foreign_id: str) -> list[Record]:
    """Every version of the foreign id's latest run that can be seen."""
    try:
        latest = await engine.store.latest(engine.name, foreign_id)
    except RecordNotFound:
        return []
    snapshots = getattr(engine.store, "snapshots", None)
    if callable(snapshots):
        versions: list[Record] = snapshots(engine.name, foreign_id, latest.run_id)
        return versions or [latest]
    return [latest]


async def wait_for(
    wf: Workflow[T, S],
    foreign_id: str,
    predicate: Callable[[Run[T, S]], bool],
    *,
    timeout: float = 5.0,
) -> Run[T, S]:
    """Wait until a version of the foreign id's latest run satisfies ``predicate``.

    With a :class:`TestingRecordStore` every stored version is checked (the last match is
    returned); with another store, the current record is polled.
    """
    engine = engine_of(wf)

    async def check() -> Run[T, S] | None:
        match = None
        for record in await _versions(engine, foreign_id):
            run = engine.build_run(record)
            if predicate(run):
                match = run
        return match

    found: Run[T, S] = await _poll_until(
        check, timeout, f"a run of {foreign_id!r} in {wf.name!r} to satisfy {predicate!r}"
    )
    return found


async def require(
    wf: Workflow[T, S],
    foreign_id: str,
    status: S | NoInferStatus,
    expected_object: T | NoInfer,
    *,
    timeout: float = 5.0,
) -> Run[T, S]:
    """Assert that the foreign id's latest run reaches ``status`` carrying ``expected_object``.

    Both objects are compared after a round trip through the workflow's codec, so custom
    encodings are normalised the same way on both sides.
    """
    engine = engine_of(wf)
    if not engine.definition.graph.is_valid(int(status)):
        raise AssertionError(
            f'Status provided is not configured for workflow: "{status!r}" (Workflow: {wf.name})'
        )
    run = await wait_for(wf, foreign_id, lambda r: r.status == status, timeout=timeout)
    expected = engine.codec.decode(engine.codec.encode(cast(T, expected_object)))
    if run.object != expected:
        raise AssertionError(
            f"run {run.run_id} of {foreign_id!r} reached {status!r} with object {run.object!r}, "
            f"expected {expected!r}"
        )
    return run


async def trigger_callback_on(
    wf: Workflow[T, S],
    foreign_id: str,
    run_id: str,
    status: S | NoInferStatus,
    payload: bytes | AttrsInstance | DataclassInstance | Mapping[str, Any] | list[Any],
    *,
    timeout: float = 5.0,
) -> None:
    """Wait until the run reaches ``status``, then deliver ``payload`` as a callback.

    ``payload`` is sent as is if it is ``bytes``. An attrs or dataclass instance, a dict or a
    list is unstructured by the workflow's converter and sent as JSON. A ``str`` is refused
    with ``TypeError`` (JSON would send it quoted, as a string): pass ``text.encode()`` to
    send text as is, or the object itself to send it as JSON.
    """
    if isinstance(payload, str):
        raise TypeError(
            f"trigger_callback_on got a str payload {payload!r}: pass bytes to send as is "
            "(payload.encode()), or the object to send as JSON"
        )
    await wait_for(
        wf, foreign_id, lambda r: r.run_id == run_id and r.status == status, timeout=timeout
    )
    if isinstance(payload, bytes):
        data = payload
    else:
        data = json.dumps(engine_of(wf).codec.converter.unstructure(payload)).encode()
    await wf.callback(foreign_id, cast(S, status), data)


async def await_timeout_insert(
    wf: Workflow[T, S],
    foreign_id: str,
    run_id: str,
    status: S | NoInferStatus,
    *,
    timeout: float = 5.0,
) -> None:
    """Wait until a timeout of the run in ``status`` has been stored."""
    store = engine_of(wf).timeout_store
    if store is None:
        raise TypeError(f"workflow {wf.name!r} was built without a timeout store")

    async def check() -> bool | None:
        for row in await store.list(wf.name):
            if row.foreign_id == foreign_id and row.run_id == run_id and row.status == status:
                return True
        return None

    await _poll_until(check, timeout, f"a timeout of run {run_id} in {status!r}")


class _TestingController(RunStateController):
    def __init__(
        self,
        record: Record,
        on_pause: Callable[[str], Awaitable[None]] | None,
        on_cancel: Callable[[str], Awaitable[None]] | None,
    ) -> None:
        async def no_store(_: Record, __: RunState) -> None:
            return None

        super().__init__(record, no_store, lambda: record.updated_at)
        self._on_pause = on_pause
        self._on_cancel = on_cancel

    async def transition(self, target: RunState, reason: str, *, error: str = "") -> Record:
        hook = {RunState.PAUSED: self._on_pause, RunState.CANCELLED: self._on_cancel}.get(target)
        if hook is not None:
            await hook(reason)
        return self.record


def new_testing_run(
    record: Record,
    obj: T,
    status_type: type[S],
    *,
    on_pause: Callable[[str], Awaitable[None]] | None = None,
    on_cancel: Callable[[str], Awaitable[None]] | None = None,
) -> Run[T, S]:
    """A Run for unit-testing a step function directly, without a workflow.

    ``run.pause()`` and ``run.cancel()`` store nothing; they call ``on_pause`` /
    ``on_cancel`` (if given) with the reason, and return the engine's control value.
    """
    return Run(
        record, status_type(record.status), obj, _TestingController(record, on_pause, on_cancel)
    )
