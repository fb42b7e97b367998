"""MemRoleScheduler: a fleet of members within one process, sharing one backend."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from datetime import timedelta
from types import TracebackType

from .._fleet import spread_roles
from ..errors import RoleLost

__all__ = ["MemRoleScheduler"]


class _Lease:
    """One caller's ``async with await_role(role)``: an async context manager, used once."""

    def __init__(self, member: _Member, role: str) -> None:
        self._member = member
        self._role = role
        self._task: asyncio.Task[object] | None = None
        self._granted: asyncio.Future[None] | None = None
        self._inside = False
        self._cancelled = False
        self.lost = False
        self.why = ""
        self.moved = False  # handed to another member on purpose (see RoleLost.moved)

    async def __aenter__(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"a role lease of {self._role!r} cannot be entered twice")
        self._task = asyncio.current_task()
        member, backend = self._member, self._member.backend
        member.wants[self._role] += 1
        try:
            while True:
                granted = self._granted = asyncio.get_running_loop().create_future()
                member.waiting.setdefault(self._role, deque()).append(self)
                backend.rebalance()
                try:
                    await granted
                except asyncio.CancelledError:
                    member.stop_waiting(self)
                    if granted.done() and not granted.cancelled():
                        backend.release(self)  # granted as the cancellation came
                    raise
                if not self.lost:
                    break
                backend.release(self)  # lost between the grant and this task resuming
                self.lost = False
        except BaseException:
            member.unwant(self._role)
            raise
        self._inside = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._inside = False
        self._member.backend.release(self)
        self._member.unwant(self._role)
        if not self.lost:
            return False
        if self._cancelled and self._task is not None and self._task.uncancel() > 0:
            return False  # cancelled from outside as well: let that cancellation through
        if exc is None or isinstance(exc, asyncio.CancelledError):
            raise RoleLost(f"role {self._role!r} was lost: {self.why}", moved=self.moved)
        return False

    @property
    def role(self) -> str:
        return self._role

    @property
    def member(self) -> _Member:
        return self._member

    def grant(self) -> bool:
        """Hand the role to this waiting caller; False if it no longer waits."""
        if self._granted is None or self._granted.done():
            return False
        self._granted.set_result(None)
        return True

    def lose(self, why: str, *, moved: bool = False) -> None:
        """The role is lost: cancel the body (if it runs) so that RoleLost ends the block."""
        if self.lost:
            return
        self.lost = True
        self.why = why
        self.moved = moved
        if self._inside and self._task is not None:
            self._cancelled = True
            self._task.cancel(f"role {self._role!r} lost: {why}")


class _Member:
    """One member of the fleet: what its callers want and wait for, and whether it stalls."""

    def __init__(self, backend: _Backend, name: str) -> None:
        self.backend = backend
        self.name = name
        self.wants: Counter[str] = Counter()
        self.waiting: dict[str, deque[_Lease]] = {}
        self.stalled = False
        self.dead = False
        self.expiry: asyncio.TimerHandle | None = None

    def stop_waiting(self, lease: _Lease) -> None:
        queue = self.waiting.get(lease.role)
        if queue is not None and lease in queue:
            queue.remove(lease)
            if not queue:
                del self.waiting[lease.role]

    def unwant(self, role: str) -> None:
        self.wants[role] -= 1
        if self.wants[role] <= 0:
            del self.wants[role]
        # Looked at once this task has run on: a caller that re-enters at once (as the engine
        # does after RoleLost) never looks like a member leaving the role.
        self.backend.rebalance_soon()


class _Backend:
    """What the replicas share: members, who holds each role, the lease of a stalled member."""

    def __init__(self, lease_duration: timedelta) -> None:
        if not isinstance(lease_duration, timedelta) or lease_duration <= timedelta(0):
            raise ValueError(f"lease_duration must be a positive timedelta, got {lease_duration!r}")
        self.lease = lease_duration.total_seconds()
        self.members: list[_Member] = []
        self.holders: dict[str, _Lease] = {}
        self._names = itertools.count(1)
        self._soon: asyncio.AbstractEventLoop | None = None

    def join(self) -> _Member:
        member = _Member(self, f"member-{next(self._names)}")
        self.members.append(member)
        return member

    def owners(self) -> dict[str, str]:
        live = [m for m in self.members if not m.dead]
        wants: dict[str, list[str]] = {}
        for member in live:
            for role in member.wants:
                wants.setdefault(role, []).append(member.name)
        return spread_roles(wants)

    def rebalance(self) -> None:
        """Take roles from holders that no longer own them; grant free roles to owners."""
        owners = self.owners()
        by_name = {m.name: m for m in self.members}
        for role, lease in list(self.holders.items()):
            if owners.get(role) != lease.member.name:
                lease.lose("it moved to another member of the fleet", moved=True)
        for role, name in owners.items():
            owner = by_name[name]
            if role in self.holders or owner.stalled:
                continue
            queue = owner.waiting.get(role)
            while queue:
                lease = queue.popleft()
                if lease.grant():
                    self.holders[role] = lease
                    break
            if queue is not None and not queue:
                del owner.waiting[role]

    def rebalance_soon(self) -> None:
        loop = asyncio.get_running_loop()
        if self._soon is not loop:
            self._soon = loop
            loop.call_soon(self._rebalance_now)

    def _rebalance_now(self) -> None:
        self._soon = None
        self.rebalance()

    def release(self, lease: _Lease) -> None:
        if self.holders.get(lease.role) is lease:
            del self.holders[lease.role]
            self.rebalance_soon()

    def stall(self, member: _Member) -> None:
        if member.stalled:
            return
        member.stalled = True
        loop = asyncio.get_running_loop()
        member.expiry = loop.call_later(self.lease, self._lapse, member)

    def _lapse(self, member: _Member) -> None:
        """A stalled member's lease has lapsed: it is dead to the fleet until it resumes."""
        member.expiry = None
        member.dead = True
        for role, lease in list(self.holders.items()):
            if lease.member is member:
                del self.holders[role]
                lease.lose("its member stalled and its lease lapsed")
        self.rebalance()

    def resume(self, member: _Member) -> None:
        if not member.stalled:
            return
        member.stalled = member.dead = False
        if member.expiry is not None:
            member.expiry.cancel()
            member.expiry = None
        self.rebalance()


class MemRoleScheduler:
    """A :class:`~luno_wf.adapter.RoleScheduler` for a fleet within one process.

    Each instance is one *member*; :meth:`replica` makes another member sharing the same
    backend, as several processes share one database. Roles are spread over the members
    that ask for them exactly as the PostgreSQL scheduler spreads them (rendezvous
    hashing, counts within one of even, see :func:`luno_wf.adapter.spread_roles`); when a
    member joins, a role it now owns is taken from its holder (the body is cancelled and
    :class:`~luno_wf.errors.RoleLost` raised out of the block) and handed over once
    released. Several callers of one member waiting for one role take it in turn (first
    come, first served), and waiting is cancellable at once.

    Members never miss a heartbeat here, except when told to: :meth:`stall` stands for a
    stopped or blocked process. A stalled member takes no role; after ``lease_duration``
    its leases lapse, its holders lose their roles (as a stalled process finds when it
    wakes) and the other members take them; :meth:`resume` makes it a live member again.
    :meth:`revoke` takes one role from its holder, as an expired lease would.

    Args:
        lease_duration: How long a stalled member keeps its roles.

    """

    def __init__(self, *, lease_duration: timedelta = timedelta(seconds=5)) -> None:
        self._member = _Backend(lease_duration).join()

    @property
    def member(self) -> str:
        """This member's name (``member-1``, ``member-2``, ... in order of creation)."""
        return self._member.name

    def replica(self) -> MemRoleScheduler:
        """Another member of the same fleet (sharing roles, holders and lease duration)."""
        other = MemRoleScheduler.__new__(MemRoleScheduler)
        other._member = self._member.backend.join()
        return other

    def await_role(self, role: str) -> _Lease:
        """Hold ``role`` for the duration of an ``async with`` block.

        Raises:
            ValueError: ``role`` is empty.

        """
        if not role:
            raise ValueError("role must be a non-empty string")
        return _Lease(self._member, role)

    def holds(self, role: str) -> bool:
        """Whether some member holds ``role`` now."""
        return role in self._member.backend.holders

    def holding(self) -> frozenset[str]:
        """The roles this member holds now."""
        backend = self._member.backend
        return frozenset(r for r, lease in backend.holders.items() if lease.member is self._member)

    def revoke(self, role: str) -> bool:
        """Take ``role`` from its holder: the body is cancelled and ``RoleLost`` raised.

        Returns whether the role was held.
        """
        lease = self._member.backend.holders.get(role)
        if lease is None:
            return False
        lease.lose("it was revoked")
        return True

    def stall(self) -> None:
        """Stop this member's heartbeats, as SIGSTOP or a blocked event loop would.

        Its callers get no role while it is stalled. After ``lease_duration`` its leases
        lapse: its holders' bodies are cancelled with ``RoleLost`` and the other members
        take its roles. Needs a running event loop.
        """
        self._member.backend.stall(self._member)

    def resume(self) -> None:
        """Let a stalled member beat again: it rejoins the fleet and takes its share back."""
        self._member.backend.resume(self._member)

    @property
    def stalled(self) -> bool:
        """Whether :meth:`stall` was called without :meth:`resume` since."""
        return self._member.stalled
