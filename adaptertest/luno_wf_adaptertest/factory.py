"""The factories a contract class asks its subclass for.

Each contract class has one factory fixture to override. The fixture returns a *factory*:
a callable that, when entered with ``async with``, builds a fresh adapter and, on exit,
releases whatever it opened. The contract tests enter it on the test's event loop; the
Hypothesis state machines enter it on a loop of their own, once per example. So a factory
must open its resources (connection pools, clients) *inside* the ``async with``, never in
the fixture itself.

For adapters that open nothing, :func:`factory_of` turns a plain constructor into a factory.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import ParamSpec, TypeAlias, TypeVar

from luno_wf import (
    ConnectorConstructor,
    ConnectorEvent,
    EventStreamer,
    RecordStore,
    RoleScheduler,
    TimeoutStore,
)

__all__ = [
    "ConnectorFactory",
    "DirectEventsFactory",
    "RecordStoreFactory",
    "RevokeRole",
    "RoleSchedulersFactory",
    "StallMember",
    "StreamerFactory",
    "TimeoutStoreFactory",
    "factory_of",
]

P = ParamSpec("P")
T = TypeVar("T")

RecordStoreFactory: TypeAlias = Callable[[], AbstractAsyncContextManager[RecordStore]]
"""``async with make_store() as store``: a fresh, empty record store."""

DirectEventsFactory: TypeAlias = Callable[
    [], AbstractAsyncContextManager[tuple[RecordStore, EventStreamer]]
]
"""``async with make_pair() as (store, streamer)``: a fresh record store and the streamer
whose log it can append events to (its ``publishes_events`` answers True for it)."""

TimeoutStoreFactory: TypeAlias = Callable[[], AbstractAsyncContextManager[TimeoutStore]]
"""``async with make_timeout_store() as store``: a fresh, empty timeout store."""

StreamerFactory: TypeAlias = Callable[[], AbstractAsyncContextManager[EventStreamer]]
"""``async with make_streamer() as streamer``: a fresh event streamer.

Streamers over a shared broker may keep earlier tests' topics: the suite uses topic and
receiver names unique to each test.
"""

RoleSchedulersFactory: TypeAlias = Callable[
    [int], AbstractAsyncContextManager[Sequence[RoleScheduler]]
]
"""``async with make_schedulers(n) as schedulers``: ``n`` schedulers sharing one backend.

They stand for ``n`` processes (``n`` members of one fleet) competing for the same roles.
A single-process scheduler may return ``n`` views of one object; the fleet cases (spread,
handover) are then skipped.
"""

ConnectorFactory: TypeAlias = Callable[
    [Sequence[ConnectorEvent]], AbstractAsyncContextManager[ConnectorConstructor]
]
"""``async with make_connector(events) as connector``: a source that yields ``events``.

The adapter may assign its own ids and types (a Kafka connector uses offsets and the topic
name), but each event's ``foreign_id`` must come through unchanged.
"""

RevokeRole: TypeAlias = Callable[[Sequence[RoleScheduler], str], Awaitable[object]]
"""``await revoke(schedulers, role)``: make the current holder of ``role`` lose it.

Optional: return it from the ``revoke_role`` fixture to enable the role-loss cases (for
example by expiring a lease or killing the holder's connection).
"""


StallMember: TypeAlias = Callable[[RoleScheduler], AbstractAsyncContextManager[object]]
"""``async with stall(scheduler)``: the member stops its heartbeats for the block's duration.

Optional: return it from the ``stall_member`` fixture to enable the stall and death
cases. Inside the block the member stands for a stopped (SIGSTOP) or blocked process: it
renews no lease; leaving the block lets it beat again (SIGCONT).
"""


def factory_of(
    make: Callable[P, T],
    *,
    close: Callable[[T], Awaitable[object]] | None = None,
) -> Callable[P, AbstractAsyncContextManager[T]]:
    """Turn a constructor that does no I/O into a factory.

    Args:
        make: Builds the adapter from the factory's arguments (none for stores and
            streamers, ``n`` for role schedulers, the seed events for connectors).
        close: Awaited with the adapter when the test is done, if given.

    Returns:
        A callable whose result is entered with ``async with`` to get a fresh adapter.

    Example:
        ``factory_of(MemRecordStore)`` or
        ``factory_of(lambda n: [MemRoleScheduler()] * n)``.

    """

    @contextlib.asynccontextmanager
    async def factory(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        adapter = make(*args, **kwargs)
        try:
            yield adapter
        finally:
            if close is not None:
                await close(adapter)

    return factory
