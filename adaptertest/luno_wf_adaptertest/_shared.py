"""Fixtures shared by the contract classes (luno's ``util.go``), and small test helpers."""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import attrs

from luno_wf import Meta, Record, RunState

__all__ = [
    "ALLOWED_TIME_DEVIATION",
    "Status",
    "SyncStatus",
    "User",
    "assert_record_equal",
    "assert_within",
    "bump",
    "dummy_wire_record",
    "unique",
    "utcnow",
    "within_timeout",
]

T = TypeVar("T")

ALLOWED_TIME_DEVIATION = timedelta(seconds=10)
"""How far apart two times may be and still count as equal (luno's ``allowedTimeDeviation``)."""


class Status(enum.IntEnum):
    """The suite's private status enum."""

    UNKNOWN = 0
    STARTED = 1
    MIDDLE = 2
    END = 3


class SyncStatus(enum.IntEnum):
    """The statuses of the acceptance and connector workflows."""

    UNKNOWN = 0
    STARTED = 1
    EMAIL_SET = 2
    REGULATION_TIMEOUT = 3
    COMPLETED = 4

    def __str__(self) -> str:
        return _SYNC_NAMES[self]


_SYNC_NAMES = {
    SyncStatus.UNKNOWN: "Unknown",
    SyncStatus.STARTED: "Started",
    SyncStatus.EMAIL_SET: "Email set",
    SyncStatus.REGULATION_TIMEOUT: "Regulatory cool down period",
    SyncStatus.COMPLETED: "Completed",
}


@attrs.define
class User:
    """The object of the acceptance and connector workflows."""

    uid: str = ""
    email: str = ""
    country_code: str = ""


def utcnow() -> datetime:
    """The wall-clock time, timezone-aware UTC."""
    return datetime.now(UTC)


def unique(prefix: str) -> str:
    """``prefix`` with a random suffix: a name no earlier test used on a shared backend."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def dummy_wire_record(
    workflow_name: str,
    *,
    foreign_id: str = "Andrew Wormald",
    run_state: RunState = RunState.INITIATED,
    status: int = Status.STARTED,
    created_at: datetime | None = None,
    meta: Meta | None = None,
) -> Record:
    """A fresh run as the engine's trigger stores it (luno's ``dummyWireRecord``).

    The run id is a new UUID, the object the JSON ``{}``, and the version 1 (a trigger's).
    """
    now = created_at or utcnow()
    return Record(
        workflow_name=workflow_name,
        foreign_id=foreign_id,
        run_id=str(uuid.uuid4()),
        run_state=run_state,
        status=int(status),
        object=b"{}",
        created_at=now,
        updated_at=now,
        meta=meta or Meta(version=1),
    )


def bump(record: Record, *, run_state: RunState | None = None, status: int | None = None) -> Record:
    """``record`` with its version incremented (and a new run state or status), as written."""
    return attrs.evolve(
        record,
        run_state=record.run_state if run_state is None else run_state,
        status=record.status if status is None else int(status),
        meta=attrs.evolve(record.meta, version=record.meta.version + 1),
    )


def assert_within(actual: datetime, expected: datetime, what: str) -> None:
    """Fail unless ``actual`` is within :data:`ALLOWED_TIME_DEVIATION` of ``expected``."""
    assert actual.tzinfo is not None, f"{what}: expected an aware datetime, got naive {actual!r}"
    assert abs(actual - expected) <= ALLOWED_TIME_DEVIATION, (
        f"{what}: {actual.isoformat()} is not within {ALLOWED_TIME_DEVIATION} of "
        f"{expected.isoformat()}"
    )


def assert_record_equal(actual: Record, expected: Record) -> None:
    """Fail unless the records agree (luno's ``recordIsEqual``; ``meta`` is not compared)."""
    for field in ("workflow_name", "foreign_id", "run_id", "status", "object", "run_state"):
        got, want = getattr(actual, field), getattr(expected, field)
        assert got == want, f"record.{field}: got {got!r}, expected {want!r}"
    assert_within(actual.created_at, expected.created_at, "record.created_at")
    assert_within(actual.updated_at, expected.updated_at, "record.updated_at")


async def within_timeout(awaitable: Awaitable[T], limit: timedelta, what: str) -> T:
    """Await ``awaitable``; fail with ``what`` if it takes longer than ``limit``."""
    try:
        async with asyncio.timeout(limit.total_seconds()):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"{what}: nothing within {limit.total_seconds():g}s") from None
