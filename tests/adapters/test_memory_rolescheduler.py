"""The in-memory role scheduler passes the role scheduler contract, fleet cases included."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import ClassVar

import pytest
from luno_wf_adaptertest import (
    RevokeRole,
    RoleSchedulerContract,
    RoleSchedulersFactory,
    StallMember,
    factory_of,
)

from luno_wf import RoleScheduler
from luno_wf.memory import MemRoleScheduler

LEASE = timedelta(milliseconds=200)


def replicas(n: int) -> list[MemRoleScheduler]:
    first = MemRoleScheduler(lease_duration=LEASE)
    return [first, *(first.replica() for _ in range(n - 1))]


async def revoke(schedulers: Sequence[RoleScheduler], role: str) -> None:
    scheduler = schedulers[0]
    assert isinstance(scheduler, MemRoleScheduler)
    assert scheduler.revoke(role), f"nobody held {role!r}"


@contextlib.asynccontextmanager
async def stall(scheduler: RoleScheduler) -> AsyncIterator[None]:
    assert isinstance(scheduler, MemRoleScheduler)
    scheduler.stall()
    try:
        yield
    finally:
        scheduler.resume()


class TestMemRoleScheduler(RoleSchedulerContract):
    settle_time: ClassVar[timedelta] = timedelta(milliseconds=100)
    lease_timeout: ClassVar[timedelta] = timedelta(seconds=2)
    handover_timeout: ClassVar[timedelta] = timedelta(seconds=2)

    @pytest.fixture
    def make_schedulers(self) -> RoleSchedulersFactory:
        return factory_of(replicas)

    @pytest.fixture
    def revoke_role(self) -> RevokeRole | None:
        return revoke

    @pytest.fixture
    def stall_member(self) -> StallMember | None:
        return stall


class TestOneMemRoleSchedulerShared(RoleSchedulerContract):
    """The same object standing for every instance, as luno's memrolescheduler is tested."""

    settle_time: ClassVar[timedelta] = timedelta(milliseconds=100)

    @pytest.fixture
    def make_schedulers(self) -> RoleSchedulersFactory:
        return factory_of(lambda n: [MemRoleScheduler()] * n)

    @pytest.fixture
    def revoke_role(self) -> RevokeRole | None:
        return revoke
