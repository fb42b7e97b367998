"""The :class:`API` Protocol: the workflow verbs connector functions receive."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from ._run import Run
from ._types import S, T

__all__ = ["API"]


class API(Protocol[T, S]):
    """What connector functions receive: the workflow's public verbs."""

    @property
    def name(self) -> str:
        """The workflow's name."""
        ...

    async def trigger(
        self,
        foreign_id: str,
        *,
        initial_value: T | None = None,
        start_at: S | None = None,
        actor: str | None = None,
    ) -> str:
        """Start a run; see :meth:`Workflow.trigger`.

        Its write names ``actor`` in the run's history; by default, inside a connector
        function, ``"connector:<name>"``.
        """
        ...

    async def callback(
        self,
        foreign_id: str,
        status: S,
        payload: bytes,
        *,
        run_id: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Deliver a callback; see :meth:`Workflow.callback` (``actor`` as for trigger)."""
        ...

    async def await_status(
        self,
        foreign_id: str,
        run_id: str,
        status: S,
        *,
        poll_interval: timedelta = ...,
        timeout: timedelta | None = ...,
    ) -> Run[T, S]:
        """Wait for a status; see :meth:`Workflow.await_status`."""
        ...
