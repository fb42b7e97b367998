"""The supervisor: runs a workflow's live processes in one task group."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .._engine import Engine
from ..errors import WorkflowNotRunning
from ._process import LiveProcess

__all__ = ["Supervisor"]


class Supervisor:
    """Owns the task that runs every live process of a workflow (structured concurrency).

    A process that raises ends the task group and so the workflow: processes catch their
    own errors, so that only a bug or a cancellation gets there.
    """

    def __init__(self, engine: Engine[Any, Any], processes: list[LiveProcess]) -> None:
        self._engine = engine
        self._processes = processes
        self._task: asyncio.Task[None] | None = None
        self._children: list[tuple[LiveProcess, asyncio.Task[None]]] = []

    def start(self) -> None:
        """Start every process (needs a running event loop)."""
        loop = asyncio.get_running_loop()
        self._engine.states.expect([p.name for p in self._processes if p.counted])
        self._task = loop.create_task(self._run(), name=f"luno_wf:{self._engine.name}")

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for process in self._processes:
                name = f"luno_wf:{self._engine.name}:{process.name}"
                self._children.append((process, group.create_task(process.run(), name=name)))

    @property
    def task(self) -> asyncio.Task[None]:
        """The supervising task; raises if not started."""
        if self._task is None:
            raise WorkflowNotRunning(workflow_name=self._engine.name)
        return self._task

    async def wait_ready(self) -> None:
        """Wait until every counted process has started; re-raise what ended them early."""
        task = self.task
        ready = asyncio.ensure_future(self._engine.states.ready.wait())
        done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            task.result()  # re-raise what ended the supervisor

    async def run_alongside(self, process: LiveProcess) -> None:
        """Run ``process`` until it ends, it is cancelled, or the workflow stops."""
        task = self.task
        running = asyncio.ensure_future(process.run())
        try:
            await asyncio.wait({running, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            self._engine.states.forget(process.name)

    async def stop(self, timeout: float) -> None:
        """Drain every process, then wait for them to exit; then all are SHUTDOWN.

        Processes waiting (for a role, an event, a poll) are cancelled at once; busy ones
        finish their unit of work (a step and its write, a batch and its flush), release
        their role and return. What is still busy after ``timeout`` seconds is cancelled:
        a write either happened whole or not at all, and an unfinished event is
        redelivered to the next holder of its role.
        """
        task = self._task
        if task is None:
            return
        self._engine.states.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        # Swept repeatedly: a process that finishes its work after one sweep waits again.
        while not task.done() and loop.time() < deadline:
            for process, child in self._children:
                if process.activity.waiting and not child.done():
                    child.cancel()
            await asyncio.wait({task}, timeout=min(_SWEEP, max(deadline - loop.time(), 0.0)))
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        self._engine.states.shut_down()


_SWEEP = 0.02
