"""The in-memory role scheduler passes the role scheduler contract, role loss included."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from luno_wf_adaptertest import RevokeRole, RoleSchedulerContract, RoleSchedulersFactory, factory_of

from luno_wf import RoleScheduler
from luno_wf.memory import MemRoleScheduler


def replicas(n: int) -> list[MemRoleScheduler]:
    first = MemRoleScheduler()
    return [first, *(first.replica() for _ in range(n - 1))]


async def revoke(schedulers: Sequence[RoleScheduler], role: str) -> None:
    scheduler = schedulers[0]
    assert isinstance(scheduler, MemRoleScheduler)
    assert scheduler.revoke(role), f"nobody held {role!r}"


class TestMemRoleScheduler(RoleSchedulerContract):
    @pytest.fixture
    def make_schedulers(self) -> RoleSchedulersFactory:
        return factory_of(replicas)

    @pytest.fixture
    def revoke_role(self) -> RevokeRole | None:
        return revoke


class TestOneMemRoleSchedulerShared(RoleSchedulerContract):
    """The same object standing for every instance, as luno's memrolescheduler is tested."""

    @pytest.fixture
    def make_schedulers(self) -> RoleSchedulersFactory:
        return factory_of(lambda n: [MemRoleScheduler()] * n)

    @pytest.fixture
    def revoke_role(self) -> RevokeRole | None:
        return revoke
