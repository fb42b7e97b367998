"""The engine's background processes, one module per kind (private)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._loop import ProcessSpec

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["ProcessSpec", "all_processes"]


def all_processes(wf: Workflow[Any, Any]) -> list[ProcessSpec]:
    """Every background process of a workflow, in luno's launch order."""
    from . import connector, delete, hook, outbox, pauseretry, step, timeout

    specs: list[ProcessSpec] = []
    if wf.outbox_enabled:
        specs.append(outbox.process(wf))
    for spec in wf.steps.values():
        specs.extend(step.processes(wf, spec))
    if wf.timeout_store is not None:
        for status in wf.timeouts:
            specs.extend(timeout.processes(wf, status))
    for connector_spec in wf.connectors.values():
        specs.extend(connector.processes(wf, connector_spec))
    for run_state in wf.hooks:
        specs.append(hook.process(wf, run_state))
    specs.append(delete.process(wf))
    if wf.pause_retry is not None:
        specs.append(pauseretry.process(wf))
    return specs
