"""The engine's background processes, one module per kind, and their supervisor."""

from __future__ import annotations

from typing import Any

from .._api import API
from .._engine import Engine
from ._process import LiveProcess
from ._supervisor import Supervisor
from .connector import processes as connector_processes
from .delete import process as delete_process
from .hook import process as hook_process
from .outbox import process as outbox_process
from .pauseretry import process as pause_retry_process
from .step import processes as step_processes
from .timeout import processes as timeout_processes

__all__ = ["LiveProcess", "Supervisor", "all_processes"]


def all_processes(engine: Engine[Any, Any], api: API[Any, Any]) -> list[LiveProcess]:
    """Every background process of a workflow, in luno's launch order.

    ``api`` is what connector functions are handed (the workflow facade).
    """
    definition, settings = engine.definition, engine.settings
    out: list[LiveProcess] = []
    if settings.outbox:
        # A store that writes the events itself leaves the publisher only stray rows.
        out.append(outbox_process(engine, sweep_only=engine.direct_events))
    for spec in definition.steps.values():
        out.extend(step_processes(engine, spec))
    if engine.timeout_store is not None:
        for status in definition.timeouts:
            out.extend(timeout_processes(engine, status))
    for connector in definition.connectors.values():
        out.extend(connector_processes(engine, connector, api))
    for run_state in definition.hooks:
        out.append(hook_process(engine, run_state))
    out.append(delete_process(engine))
    if settings.pause_retry is not None:
        out.append(pause_retry_process(engine, settings.pause_retry))
    return out
