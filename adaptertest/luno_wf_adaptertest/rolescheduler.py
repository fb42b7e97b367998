"""The :class:`~luno_wf.adapter.RoleScheduler` contract (luno's ``RunRoleSchedulerTest``).

Subclass :class:`RoleSchedulerContract` and override ``make_schedulers``, which builds ``n``
schedulers sharing one backend (``n`` members of one fleet competing for roles)::

    class TestMyRoleScheduler(RoleSchedulerContract):
        @pytest.fixture
        def make_schedulers(self) -> RoleSchedulersFactory:
            return factory_of(lambda n: [MyRoleScheduler(DSN) for _ in range(n)])

        @pytest.fixture
        def revoke_role(self) -> RevokeRole | None:  # optional: enables the role-loss case
            async def revoke(schedulers, role): ...  # expire the holder's lease
            return revoke

        @pytest.fixture
        def stall_member(self) -> StallMember | None:  # optional: the stall and death cases
            return my_stall  # `async with my_stall(scheduler)`: no heartbeats inside

Go's ``context`` becomes asyncio's: "the returned context is a child of the caller's" means
the body runs in the caller's context and is cancelled with it; "Await returns
context.Canceled" means a waiting ``async with`` raises ``CancelledError`` when cancelled.

The fleet contract (see :class:`~luno_wf.adapter.RoleScheduler`) changes what luno's cases
can assert: a role belongs to its owner among the members asking for it, and a member that
joins takes the roles it now owns from their holders (``RoleLost``). So the cases hold roles
the way the engine does, asking again after ``RoleLost``, and judge "at most one holder"
by who is inside the block at each moment, not by who ever entered it; a case that needs a
holder and a waiter lets the fleet settle first and then looks at which member holds.
The fleet cases (spread, handover on join, leave, death and stall) need ``n`` distinct
members and are skipped for ``n`` views of one object.
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
from .factory import RevokeRole, RoleSchedulersFactory, StallMember

__all__ = ["Fleet", "Holding", "Monitor", "RoleSchedulerContract"]

GetSchedulers = Callable[[int], Awaitable[Sequence[RoleScheduler]]]

_parent: contextvars.ContextVar[str] = contextvars.ContextVar("parent")


class Monitor:
    """Who is inside each role's block right now; records every overlap."""

    def __init__(self) -> None:
        self.inside: dict[str, set[int]] = {}
        self.overlaps: list[str] = []

    def enter(self, role: str, member: int) -> None:
        """Member ``member`` entered ``role``'s block."""
        holders = self.inside.setdefault(role, set())
        if holders:
            self.overlaps.append(f"{role!r}: member {member} entered while {holders} inside")
        holders.add(member)

    def exit(self, role: str, member: int) -> None:
        """Member ``member`` left ``role``'s block."""
        holders = self.inside.get(role, set())
        holders.discard(member)
        if not holders:
            self.inside.pop(role, None)

    def holder(self, role: str) -> int | None:
        """The one member inside ``role``'s block, or None (none, or an overlap)."""
        holders = self.inside.get(role, set())
        return next(iter(holders)) if len(holders) == 1 else None

    def counts(self, members: int) -> list[int]:
        """How many roles each of ``members`` members holds."""
        counts = [0] * members
        for holders in self.inside.values():
            for member in holders:
                counts[member] += 1
        return counts


class Holding:
    """A task that takes a role and holds it until :meth:`release` (or cancellation).

    With ``retry``, it asks for the role again after ``RoleLost``, as the engine does.
    """

    def __init__(
        self,
        scheduler: RoleScheduler,
        role: str,
        *,
        retry: bool = False,
        monitor: Monitor | None = None,
        member: int = 0,
    ) -> None:
        self.acquired = asyncio.Event()
        self.entries = 0
        self.lost = 0
        self.inside = False
        self._release = asyncio.Event()
        self._retry = retry
        self._monitor = monitor
        self._member = member
        self.task = asyncio.create_task(self._hold(scheduler, role))

    async def _hold(self, scheduler: RoleScheduler, role: str) -> None:
        while True:
            try:
                async with scheduler.await_role(role):
                    self._entered(role)
                    try:
                        await self._release.wait()
                    finally:
                        self._left(role)
                return
            except RoleLost:
                self.lost += 1
                if not self._retry:
                    raise

    def _entered(self, role: str) -> None:
        self.entries += 1
        self.inside = True
        self.acquired.set()
        if self._monitor is not None:
            self._monitor.enter(role, self._member)

    def _left(self, role: str) -> None:
        self.inside = False
        if self._monitor is not None:
            self._monitor.exit(role, self._member)

    def release(self) -> None:
        """Leave the role's block (and stop asking for it)."""
        self._release.set()

    async def stop(self) -> None:
        """Cancel the task (if still running) and wait for it to end."""
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled():
            self.task.exception()  # retrieved: the test has judged it already


class Fleet:
    """Members each holding every one of ``roles`` the way the engine does."""

    def __init__(self, roles: Sequence[str], monitor: Monitor) -> None:
        self.roles = list(roles)
        self.monitor = monitor
        self.members: list[list[Holding]] = []

    def join(self, scheduler: RoleScheduler) -> int:
        """A new member asking for every role; returns its index."""
        index = len(self.members)
        self.members.append(
            [
                Holding(scheduler, role, retry=True, monitor=self.monitor, member=index)
                for role in self.roles
            ]
        )
        return index

    async def leave(self, index: int) -> None:
        """Member ``index`` stops asking for its roles (its holdings are cancelled)."""
        for holding in self.members[index]:
            await holding.stop()

    def lost(self, index: int) -> int:
        """How many times member ``index`` lost a role it held."""
        return sum(h.lost for h in self.members[index])

    def held_by(self, index: int) -> set[str]:
        """The roles member ``index`` holds now."""
        return {r for r in self.roles if index in self.monitor.inside.get(r, set())}

    def spread(self, members: Sequence[int]) -> list[int] | None:
        """Roles per member, if each role has one holder among ``members``, within one of even.

        None if not (yet).
        """
        holders = [self.monitor.holder(role) for role in self.roles]
        if any(h is None or h not in members for h in holders):
            return None
        counts = [holders.count(m) for m in members]
        return counts if max(counts) - min(counts) <= 1 else None

    async def stop(self) -> None:
        """Cancel every holding."""
        for index in range(len(self.members)):
            await self.leave(index)


async def _until(check: Callable[[], bool], limit: timedelta, what: str) -> None:
    async def poll() -> None:
        while True:
            if check():
                return
            await asyncio.sleep(0.02)

    await within_timeout(poll(), limit, what)


class RoleSchedulerContract:
    """The conformance cases of a role scheduler. Override ``make_schedulers``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.conformance]

    acquire_timeout: ClassVar[timedelta] = timedelta(seconds=10)
    """How long taking a free role may take."""
    cancel_timeout: ClassVar[timedelta] = timedelta(seconds=2)
    """How long a cancelled wait for a role may take to end."""
    settle_time: ClassVar[timedelta] = timedelta(milliseconds=500)
    """How long a fleet must stay unchanged to count as settled (members have seen each
    other, and roles have moved to their owners)."""
    handover_timeout: ClassVar[timedelta] = timedelta(seconds=10)
    """How long roles may take to reach their new owners after a member joins or leaves."""
    lease_timeout: ClassVar[timedelta] = timedelta(seconds=20)
    """How long a stalled or dead member's roles may take to be held elsewhere."""

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

    @pytest.fixture
    def stall_member(self) -> StallMember | None:
        """Override (optional): a way to stall a member; None skips the stall cases."""
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

    async def _members(self, get_schedulers: GetSchedulers, n: int) -> Sequence[RoleScheduler]:
        schedulers = await get_schedulers(n)
        if len({id(s) for s in schedulers}) < n:
            pytest.skip("the schedulers are views of one object: one member, no fleet")
        return schedulers

    async def _settled(self, holdings: Sequence[Holding], limit: timedelta, what: str) -> Holding:
        """Wait until exactly one of ``holdings`` is inside and has stayed so a while."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit.total_seconds()
        settle = self.settle_time.total_seconds()
        seen: tuple[int, ...] = ()
        since = loop.time()
        while True:
            state = tuple(h.entries for h in holdings)
            inside = [h for h in holdings if h.inside]
            if state != seen or len(inside) != 1:
                seen, since = state, loop.time()
            elif loop.time() - since >= settle:
                return inside[0]
            assert loop.time() < deadline, f"{what}: no settled holder within {limit}"
            await asyncio.sleep(0.02)

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
        """Of five instances awaiting one role, at most one holds it at a time (luno).

        luno asserts that at most one instance *ever* enters; in a fleet the role's owner
        may take it from an instance that entered before the owner asked, so the case
        counts the instances inside the block at each moment.
        """
        schedulers = await get_schedulers(5)
        role = unique("leader-lock")
        monitor = Monitor()
        holdings = [
            Holding(s, role, retry=True, monitor=monitor, member=i)
            for i, s in enumerate(schedulers)
        ]
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.acquire_timeout.total_seconds()
            for tick in range(10**6):
                holders = sum(h.inside for h in holdings)
                assert holders <= 1, f"{holders} instances hold {role!r} at once"
                assert monitor.overlaps == [], monitor.overlaps
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
        """A wait for a held role ends with CancelledError when cancelled (luno).

        The fleet decides which of the two instances holds the role (its owner), so the
        case lets it settle and cancels the one left waiting.
        """
        first, second = await get_schedulers(2)
        role = unique("leader-releasing")
        holdings = [Holding(first, role, retry=True), Holding(second, role, retry=True)]
        try:
            holder = await self._settled(holdings, self.acquire_timeout, f"taking {role!r}")
            waiter = holdings[1] if holder is holdings[0] else holdings[0]
            entries = holder.entries
            waiter.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await within_timeout(waiter.task, timedelta(seconds=5), "the cancelled wait")
            assert holder.inside and holder.entries == entries, "the holder lost the role"
        finally:
            for holding in holdings:
                await holding.stop()

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
        """A cancelled wait ends at once; the next waiter, not it, gets the released role.

        Which instance holds first is the fleet's choice: the case lets it settle, then
        cancels one waiter and releases the holder.
        """
        schedulers = await get_schedulers(3)
        role = unique("cancelled-wait")
        holdings = [Holding(s, role, retry=True) for s in schedulers]
        try:
            holder = await self._settled(holdings, self.acquire_timeout, f"taking {role!r}")
            waiters = [h for h in holdings if h is not holder]
            waiters[0].task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await within_timeout(waiters[0].task, self.cancel_timeout, "the cancelled wait")
            entries = waiters[1].entries
            holder.release()
            await within_timeout(holder.task, self.acquire_timeout, "releasing")
            await _until(
                lambda: waiters[1].entries > entries, self.acquire_timeout, "the next waiter"
            )
            assert waiters[0].task.cancelled(), "a cancelled wait took the role"
        finally:
            for holding in holdings:
                await holding.stop()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_mutual_exclusion(self, get_schedulers: GetSchedulers) -> None:
        """Five instances taking and releasing one role never overlap, and all progress.

        A turn cut short by ``RoleLost`` (the role moved to its owner) is taken again.
        """
        schedulers = await get_schedulers(5)
        role = unique("exclusion")
        inside: list[int] = []
        overlaps: list[list[int]] = []
        turns = [0] * len(schedulers)

        async def worker(index: int, scheduler: RoleScheduler) -> None:
            while turns[index] < 3:
                try:
                    async with scheduler.await_role(role):
                        inside.append(index)
                        try:
                            if len(inside) > 1:
                                overlaps.append(list(inside))
                            await asyncio.sleep(0.01)
                        finally:
                            inside.remove(index)
                        turns[index] += 1
                except RoleLost:
                    pass

        async def everyone() -> None:
            async with asyncio.TaskGroup() as tg:
                for index, scheduler in enumerate(schedulers):
                    tg.create_task(worker(index, scheduler))

        await within_timeout(everyone(), self.acquire_timeout * 3, "15 turns of the role")
        assert overlaps == [], f"instances held {role!r} together: {overlaps}"
        assert turns == [3] * len(schedulers)

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

    # -- the fleet ---------------------------------------------------------------------

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_roles_spread_evenly(self, get_schedulers: GetSchedulers) -> None:
        """Many roles over four members: each role has one holder, counts within one."""
        schedulers = await self._members(get_schedulers, 4)
        name = unique("spread")
        roles = [f"{name}-{i}" for i in range(18)] + [f"{name}-x-{i}-of-4" for i in (1, 2, 3, 4)]
        fleet = Fleet(roles, Monitor())
        try:
            for scheduler in schedulers:
                fleet.join(scheduler)
            await _until(
                lambda: fleet.spread(range(4)) is not None,
                self.handover_timeout,
                "22 roles held within one of even by 4 members",
            )
            shards = [fleet.monitor.holder(r) for r in roles[-4:]]
            assert sorted(h for h in shards if h is not None) == [0, 1, 2, 3], (
                f"the four shards of one family are not one per member: {shards}"
            )
            assert fleet.monitor.overlaps == [], fleet.monitor.overlaps
        finally:
            await fleet.stop()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_a_joining_member_takes_its_share(self, get_schedulers: GetSchedulers) -> None:
        """Roles held by one member move to members that join, never held twice at once."""
        schedulers = await self._members(get_schedulers, 3)
        roles = [f"{unique('join')}-{i}" for i in range(12)]
        fleet = Fleet(roles, Monitor())
        try:
            fleet.join(schedulers[0])
            await _until(
                lambda: fleet.spread([0]) is not None, self.acquire_timeout, "one member alone"
            )
            fleet.join(schedulers[1])
            fleet.join(schedulers[2])
            await _until(
                lambda: fleet.spread([0, 1, 2]) == [4, 4, 4],
                self.handover_timeout,
                "12 roles spread over 3 members after two joined",
            )
            assert fleet.lost(0) >= 8, "the first member kept roles it no longer owns"
            assert fleet.monitor.overlaps == [], fleet.monitor.overlaps
        finally:
            await fleet.stop()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_a_leaving_member_hands_over(self, get_schedulers: GetSchedulers) -> None:
        """When a member stops asking for its roles, the others take them."""
        schedulers = await self._members(get_schedulers, 3)
        roles = [f"{unique('leave')}-{i}" for i in range(12)]
        fleet = Fleet(roles, Monitor())
        try:
            for scheduler in schedulers:
                fleet.join(scheduler)
            await _until(
                lambda: fleet.spread([0, 1, 2]) is not None, self.handover_timeout, "spreading"
            )
            await fleet.leave(0)
            await _until(
                lambda: fleet.spread([1, 2]) == [6, 6],
                self.handover_timeout,
                "the leaving member's roles held by the other two",
            )
            assert fleet.monitor.overlaps == [], fleet.monitor.overlaps
        finally:
            await fleet.stop()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_a_dead_member_hands_over_after_its_lease(
        self, get_schedulers: GetSchedulers, stall_member: StallMember | None
    ) -> None:
        """A member that never beats again loses its roles to the others after its lease."""
        if stall_member is None:
            pytest.skip("no stall_member hook: the adapter cannot simulate a stall")
        schedulers = await self._members(get_schedulers, 3)
        roles = [f"{unique('death')}-{i}" for i in range(12)]
        fleet = Fleet(roles, Monitor())
        try:
            for scheduler in schedulers:
                fleet.join(scheduler)
            await _until(
                lambda: fleet.spread([0, 1, 2]) is not None, self.handover_timeout, "spreading"
            )
            had = len(fleet.held_by(0))
            async with stall_member(schedulers[0]):
                await _until(
                    lambda: fleet.spread([1, 2]) == [6, 6],
                    self.lease_timeout,
                    "the dead member's roles held by the other two",
                )
                assert fleet.held_by(0) == set()
                assert fleet.lost(0) >= had, "the dead member's bodies were not cancelled"
                await fleet.leave(0)  # it never comes back
            assert fleet.monitor.overlaps == [], fleet.monitor.overlaps
        finally:
            await fleet.stop()

    @pytest.mark.conformance_extension
    @pytest.mark.asyncio
    async def test_a_stalled_member_wakes_without_its_roles(
        self, get_schedulers: GetSchedulers, stall_member: StallMember | None
    ) -> None:
        """A member stalled past its lease has lost its roles when it wakes.

        It then takes its share back through the usual handover, never two holders at once.
        """
        if stall_member is None:
            pytest.skip("no stall_member hook: the adapter cannot simulate a stall")
        schedulers = await self._members(get_schedulers, 2)
        roles = [f"{unique('stall')}-{i}" for i in range(8)]
        fleet = Fleet(roles, Monitor())
        try:
            for scheduler in schedulers:
                fleet.join(scheduler)
            await _until(lambda: fleet.spread([0, 1]) == [4, 4], self.handover_timeout, "spreading")
            async with stall_member(schedulers[0]):
                await _until(
                    lambda: fleet.spread([1]) == [8],
                    self.lease_timeout,
                    "the stalled member's roles held by the other",
                )
            assert fleet.lost(0) >= 4, "the stalled member's bodies were not cancelled"
            await _until(
                lambda: fleet.spread([0, 1]) == [4, 4],
                self.handover_timeout,
                "the woken member taking its share back",
            )
            assert fleet.monitor.overlaps == [], fleet.monitor.overlaps
        finally:
            await fleet.stop()
