"""Who made a write: the ``meta.actor`` every write of the engine carries.

Each write names its actor, kept in the run's history: ``"api"`` for the API verbs (or
the identity a caller passes, ``"operator:alice"``), ``"schedule:<cron spec>"`` for a
scheduled trigger, ``"step:<STATUS>"``, ``"callback:<STATUS>"`` and
``"timeout:<STATUS>"`` for the processes moving runs, ``"delete"`` for the deletion
consumer, ``"pause-retry"`` for the paused-run retry, ``"set-aside:<process>"`` for the
pause after a poison event, ``"compensate"`` and ``"compensated:<version>"`` for
compensation. Connector functions calling the API act as ``"connector:<name>"`` unless they
pass an actor: the connector consumer sets :data:`CONNECTOR` around each call.
"""

from __future__ import annotations

import contextvars

from ._record import Record

__all__ = [
    "API",
    "COMPENSATE",
    "COMPENSATED",
    "COMPENSATING",
    "CONNECTOR",
    "DELETE",
    "PAUSE_RETRY",
    "api_actor",
    "compensating",
    "error_text",
    "process_actor",
]

API = "api"
DELETE = "delete"
PAUSE_RETRY = "pause-retry"
COMPENSATE = "compensate"
COMPENSATED = "compensated:"
"""Prefix of the actor of a compensation's progress write: ``compensated:<entry version>``."""
COMPENSATING = "compensating: "
"""Prefix of the reason of a run paused for compensation."""

CONNECTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "luno_wf_connector_actor", default=None
)
"""The actor of API calls made by the connector function running in this context."""


def api_actor(actor: str | None, default: str = API) -> str:
    """The actor of an API call: ``actor`` if given, else the connector's, else ``default``."""
    if actor is not None:
        if not isinstance(actor, str):
            raise TypeError(f"actor must be a str or None, got {actor!r}")
        return actor
    return CONNECTOR.get() or default


def process_actor(kind: str, status_name: str) -> str:
    """The actor of a process moving runs: ``"step:CREATED"``, ``"timeout:WAITING"``."""
    return f"{kind}:{status_name}"


def error_text(error: BaseException) -> str:
    """An error as ``meta.error`` keeps it: its type and message."""
    return f"{type(error).__name__}: {error}"


def compensating(record: Record) -> bool:
    """Whether the run is paused for compensation (its hooks and retry leave it alone)."""
    meta = record.meta
    return meta.run_state_reason.startswith(COMPENSATING) or meta.actor.startswith(COMPENSATED)
