"""The :class:`~luno_wf.adapter.RoleScheduler` contract (luno's ``RunRoleSchedulerTest``).

Subclass :class:`RoleSchedulerContract` and override ``make_schedulers``, which builds ``n``
schedulers sharing one backend (``n`` processes competing for roles)::

    class TestMyRoleScheduler(RoleSchedulerContract):
        @pytest.fixture
        def make_schedulers(self) -> RoleSchedulersFactory:
            return factory_of(lambda n: [MyRoleScheduler(DSN) for _ in range(n)])

        @pytest.fixture
        def revoke_role(self) -> RevokeRole | None:  # optional: enables the role-loss case
            async def revoke(schedulers, role): ...  # expire the holder's lease
            return revoke

Go's ``context`` becomes asyncio's: "the returned context is a child of the caller's" means
the body runs in the caller's context and is cancelled with it; "Await returns
context.Canceled" means a waiting ``async with`` raises ``CancelledError`` when cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import ClassVar

import pytest
import pytest_asyncio

from luno_wf import RoleScheduler
from luno_wf.errors import RoleLost

from ._shared import unique, within_timeout
from .factory import RevokeRole, RoleSchedulersFactory

__all__ = ["Holding", "RoleSchedulerContract"]

GetSchedulers = Callable[[int], Awaitable[Sequence[RoleScheduler]]]

_parent: contextvars.ContextVar[str] = contextvars.ContextVar("parent")


class Holding:
    """A task that takes a role and holds it until :meth:`release` (or cancellation)."""

    def __init__(self, scheduler: RoleScheduler, role: str) -> None:
        self.acquired = asyncio.Event()
        self.entries = 0
        self._release = asyncio.Event()
        self.task = asyncio.create_task(self._hold(scheduler, role))

    async def _hold(self, scheduler: RoleScheduler, role: str) -> None:
        async with scheduler.await_role(role):
            self.entries += 1
            self.acquired.set()
            await self._release.wait()

    def release(self) -> None:
        """Leave the role's block."""
        self._release.set()

    async def stop(self) -> None:
        """Cancel the task (if still running) and wait for it to end."""
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled():
            self.task.exception()  # retrieved: the test has judged it already


class RoleSchedulerContract:
    """The conformance cases of a role scheduler. Override ``make_schedulers``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.conformance]

    acquire_timeout: ClassVar[timedelta] = timedelta(seconds=10)
    """How long taking a free role may take."""
    cancel_timeout: ClassVar[timedelta] = timedelta(seconds=2)
    """How long a cancelled wait for a role may take to end."""

    @pytest.fixture
    def make_schedulers(self) -> RoleSchedulersFactory:
        """Override: return a factory of ``n`` schedulers sharing one backend."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the make_schedulers fixture to return a "
            "RoleSchedulersFactory, e.g. factory_of(lambda n: [MyScheduler()] * n)"
        )

    @pytest.fixture
    def revoke_role(self) -> RevokeRole | None:
        """Override (optional): a way to make a role's holder lose it; None skips that case."""
        return None

    @pytest_asyncio.fixture
    async def get_schedulers(
        self, make_schedulers: RoleSchedulersFactory
    ) -> AsyncIterator[GetSchedulers]:
        """Awaited with a count, gives that many schedulers; closes them after the test."""
        async with contextlib.AsyncExitStack() as stack:

            async def get(n: int) -> Sequence[RoleScheduler]:
                schedulers = await stack.enter_async_context(make_schedulers(n))
                assert len(schedulers) == n, f"make_schedulers({n}) gave {len(schedulers)}"
                return schedulers

            yield get

    # -- luno's cases ------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_returned_context(self, get_schedulers: GetSchedulers) -> None:
        """The body runs in the caller's context and is cancelled with it (luno)."""
        first, second = await get_schedulers(2)
        role = unique("leader-cancelled-ctx")
        seen: list[str | None] = []
        entered = asyncio.Event()

        async def hold() -> None:
            async with first.await_role(role):
                seen.append(_parent.get(None))
                entered.set()
                await asyncio.Event().wait()

        _parent.set("context")
        task = asyncio.create_task(hold())
        await within_timeout(entered.wait(), self.acquire_timeout, f"taking {role!r}")
        assert seen == ["context"], f"the body did not see the caller's context: {seen}"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await within_timeout(task, self.cancel_timeout, "the cancelled holder")
        # Cancelling the holder released the role.
        holding = Holding(second, role)
        try:
            await within_timeout(holding.acquired.wait(), self.acquire_timeout, "re-taking")
        finally:
            await holding.stop()

    @pytest.mark.asyncio
    async def test_locking(self, get_schedulers: GetSchedulers) -> None:
        """Of five instances awaiting one role, at most one ever holds it (luno)."""
        schedulers = await get_schedulers(5)
        role = unique("leader-lock")
        holdings = [Holding(s, role) for s in schedulers]
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.acquire_timeout.total_seconds()
            for tick in range(10**6):
                holders = sum(h.acquired.is_set() for h in holdings)
                assert holders <= 1, f"{holders} instances hold {role!r} at once"
                # luno checks for 250ms; we also wait for one instance to take the role.
                if tick >= 5 and holders == 1:
                    break
                assert loop.time() < deadline, f"no instance took {role!r}"
                await asyncio.sleep(0.05)
        finally:
            for holding in holdings:
                await holding.stop()

    @pytest.mark.asyncio
    async def test_releasing(self, get_schedulers: GetSchedulers) -> None:
        """A wait for a held role ends with CancelledError when cancelled (luno)."""
        first, second = await get_schedulers(2)
        role = unique("leader-releasing")
        holder = Holding(first, role)
        try:
            await within_timeout(holder.acquired.wait(), self.acquire_timeout, "taking")
            waiter = Holding(second, role)
            await asyncio.sleep(0.05)
            waiter.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await within_timeout(waiter.task, timedelta(seconds=5), "the cancelled wait")
            assert not waiter.acquired.is_set(), "the second instance took a held role"
        finally:
            await holder.stop()

    # -- extensions (spec §5.7) --------------------------------------------------------

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_reacquire_after_release(self, get_schedulers: GetSchedulers) -> None:
        """A released role can be taken again, by the same instance and by another."""
        first, second = await get_schedulers(2)
        role = unique("reacquire")
        for scheduler in (first, first, second, first):
            holding = Holding(scheduler, role)
            await within_timeout(holding.acquired.wait(), self.acquire_timeout, "taking")
            holding.release()
            await within_timeout(holding.task, self.acquire_timeout, "releasing")

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_cancelled_wait_never_takes_the_role(self, get_schedulers: GetSchedulers) -> None:
        """A cancelled wait ends at once; the next waiter, not it, gets the released role."""
        first, second, third = await get_schedulers(3)
        role = unique("cancelled-wait")
        holder = Holding(first, role)
        waiters: list[Holding] = []
        try:
            await within_timeout(holder.acquired.wait(), self.acquire_timeout, "taking")
            waiters = [Holding(second, role), Holding(third, role)]
            await asyncio.sleep(0.1)
            waiters[0].task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await within_timeout(waiters[0].task, self.cancel_timeout, "the cancelled wait")
            holder.release()
            await within_timeout(
                waiters[1].acquired.wait(), self.acquire_timeout, "the next waiter"
            )
            assert not waiters[0].acquired.is_set(), "a cancelled wait took the role"
        finally:
            for holding in (holder, *waiters):
                await holding.stop()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_mutual_exclusion(self, get_schedulers: GetSchedulers) -> None:
        """Five instances taking and releasing one role never overlap, and all progress."""
        schedulers = await get_schedulers(5)
        role = unique("exclusion")
        inside: list[int] = []
        overlaps: list[list[int]] = []
        entries = [0] * len(schedulers)

        async def worker(index: int, scheduler: RoleScheduler) -> None:
            for _ in range(3):
                async with scheduler.await_role(role):
                    inside.append(index)
                    if len(inside) > 1:
                        overlaps.append(list(inside))
                    entries[index] += 1
                    await asyncio.sleep(0.01)
                    inside.remove(index)

        async def everyone() -> None:
            async with asyncio.TaskGroup() as tg:
                for index, scheduler in enumerate(schedulers):
                    tg.create_task(worker(index, scheduler))

        await within_timeout(everyone(), self.acquire_timeout * 3, "15 turns of the role")
        assert overlaps == [], f"instances held {role!r} together: {overlaps}"
        assert entries == [3] * len(schedulers)

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_roles_are_independent(self, get_schedulers: GetSchedulers) -> None:
        """Holding one role does not block another."""
        first, second = await get_schedulers(2)
        a = Holding(first, unique("role-a"))
        b = Holding(second, unique("role-b"))
        try:
            await within_timeout(a.acquired.wait(), self.acquire_timeout, "taking role a")
            await within_timeout(b.acquired.wait(), self.acquire_timeout, "taking role b")
        finally:
            await a.stop()
            await b.stop()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_error_in_body_releases(self, get_schedulers: GetSchedulers) -> None:
        """An exception leaves the block unchanged and releases the role."""
        first, second = await get_schedulers(2)
        role = unique("error")

        class Boom(Exception):
            pass

        async def fail() -> None:
            async with first.await_role(role):
                raise Boom

        with pytest.raises(Boom):
            await within_timeout(fail(), self.acquire_timeout, "taking")
        holding = Holding(second, role)
        try:
            await within_timeout(holding.acquired.wait(), self.acquire_timeout, "re-taking")
        finally:
            await holding.stop()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_role_lost_raises(
        self, get_schedulers: GetSchedulers, revoke_role: RevokeRole | None
    ) -> None:
        """A role lost while held cancels the body and raises RoleLost; another may take it."""
        if revoke_role is None:
            pytest.skip("no revoke_role hook: the adapter cannot simulate losing a role")
        schedulers = await get_schedulers(2)
        role = unique("lost")
        holder = Holding(schedulers[0], role)
        try:
            await within_timeout(holder.acquired.wait(), self.acquire_timeout, "taking")
            await revoke_role(schedulers, role)
            with pytest.raises(RoleLost):
                await within_timeout(holder.task, self.acquire_timeout, "losing the role")
            other = Holding(schedulers[1], role)
            try:
                await within_timeout(other.acquired.wait(), self.acquire_timeout, "re-taking")
            finally:
                await other.stop()
        finally:
            await holder.stop()
