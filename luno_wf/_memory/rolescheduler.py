"""MemRoleScheduler: roles held within one process."""

from __future__ import annotations

import asyncio
from types import TracebackType

from ..errors import RoleLost

__all__ = ["MemRoleScheduler"]


class _Lease:
    """One holding of a role: an async context manager."""

    def __init__(self, backend: _Backend, role: str) -> None:
        self._backend = backend
        self._role = role
        self._task: asyncio.Task[object] | None = None
        self.lost = False

    async def __aenter__(self) -> None:
        lock = self._backend.locks.setdefault(self._role, asyncio.Lock())
        await lock.acquire()  # FIFO and cancellable while waiting
        self._task = asyncio.current_task()
        self._backend.holders[self._role] = self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._backend.holders.get(self._role) is self:
            del self._backend.holders[self._role]
        self._backend.locks[self._role].release()
        if self.lost and isinstance(exc, asyncio.CancelledError) and self._task is not None:
            self._task.uncancel()
            raise RoleLost(f"role {self._role!r} was revoked")
        return False

    def revoke(self) -> None:
        self.lost = True
        if self._task is not None:
            self._task.cancel(f"role {self._role!r} revoked")


class _Backend:
    def __init__(self) -> None:
        self.locks: dict[str, asyncio.Lock] = {}
        self.holders: dict[str, _Lease] = {}


class MemRoleScheduler:
    """A :class:`~luno_wf.adapter.RoleScheduler` for one process.

    Waiting for a role is cancellable at once and first-come first-served.
    :meth:`replica` gives another scheduler sharing the same roles (as several processes
    would share one backend), and :meth:`revoke` simulates losing a role.
    """

    def __init__(self) -> None:
        self._backend = _Backend()

    def replica(self) -> MemRoleScheduler:
        """Another scheduler over the same roles."""
        other = MemRoleScheduler()
        other._backend = self._backend
        return other

    def await_role(self, role: str) -> _Lease:
        """Hold ``role`` for the duration of an ``async with`` block."""
        return _Lease(self._backend, role)

    def holds(self, role: str) -> bool:
        """Whether some caller holds ``role`` now."""
        return role in self._backend.holders

    def revoke(self, role: str) -> bool:
        """Take ``role`` from its holder: the body is cancelled and ``RoleLost`` raised.

        Returns whether the role was held.
        """
        lease = self._backend.holders.get(role)
        if lease is None:
            return False
        lease.revoke()
        return True
