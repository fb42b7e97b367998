"""A live background process: it waits for its role, then runs its body under it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from .._engine import Engine
from .._options import ExponentialBackoff, backoff_delay
from .._processstate import ProcessState
from ..errors import RoleLost

__all__ = ["Body", "LiveProcess", "Progress", "ensure_not_cancelled"]

Progress = Callable[[], None]
"""Called by a process body after each unit of work, resetting the error back-off."""
Body = Callable[[Progress], Awaitable[None]]
"""A process's work: runs while the process holds its role, until cancelled or an error."""


def ensure_not_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop.

    A library that swallows a cancellation (psycopg_pool's use of ``asyncio.wait_for`` can,
    on Python 3.11) would otherwise leave an idle loop running for ever and ``stop()``
    waiting on it: loops check this before each round.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class LiveProcess:
    """One background process of a running workflow.

    Invariant: the body runs only while this process holds ``role`` cluster-wide. A body
    error is logged, counted, backed off and retried (the role is given up meanwhile, so
    another process may take it); a lost role is waited for again; cancellation always
    propagates.

    Args:
        engine: The workflow's engine (scheduler, states, logger).
        name: The process's name in :meth:`Workflow.states` and the metrics.
        role: The role it holds while working (luno's role name).
        body: Its work.
        backoff: The wait after a body error.
        counted: Whether :meth:`Workflow.run` waits for it to start (schedules are not).

    """

    def __init__(
        self,
        engine: Engine[Any, Any],
        name: str,
        role: str,
        body: Body,
        backoff: timedelta | ExponentialBackoff,
        *,
        counted: bool = True,
    ) -> None:
        self.name = name
        self.role = role
        self.counted = counted
        self._engine = engine
        self._body = body
        self._backoff = backoff
        self._attempts = 0
        self.activity = engine.states.activity(name)

    def _progress(self) -> None:
        self._attempts = 0

    async def run(self) -> None:
        """Run until cancelled."""
        states = self._engine.states
        states.set(self.name, ProcessState.IDLE)
        if self.counted:
            states.started()
        try:
            while not self.activity.draining:
                ensure_not_cancelled()
                await self.turn()
        finally:
            states.set(self.name, ProcessState.SHUTDOWN)

    async def turn(self) -> None:
        """Wait for the role and work under it until the body fails or the role is lost."""
        engine = self._engine
        engine.states.set(self.name, ProcessState.IDLE)
        activity = self.activity
        try:
            activity.waiting = True
            async with engine.scheduler.await_role(self.role):
                activity.waiting = False
                engine.states.set(self.name, ProcessState.RUNNING)
                await self._body(self._progress)
        except RoleLost as lost:
            # A move the fleet made on purpose is routine; a lapsed lease is worth a look.
            log = engine.logger.info if lost.moved else engine.logger.warning
            log(
                "role %s [role=%s], [process=%s]: %s; waiting for it again",
                "moved" if lost.moved else "lost",
                self.role,
                self.name,
                lost.message,
            )
        except Exception as err:
            self._attempts += 1
            engine.probe(self.name).errors += 1
            engine.logger.error(
                "run error [role=%s], [process=%s]: %s", self.role, self.name, err, exc_info=err
            )
            activity.waiting = True
            await asyncio.sleep(backoff_delay(self._backoff, self._attempts))
