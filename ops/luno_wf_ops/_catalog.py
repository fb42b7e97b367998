"""The user's built workflows, as the operator surface reads them: names, graph, decoding.

This is the one module that reads a built workflow's definition and codec, through
``luno_wf._workflow.engine_of`` (as ``luno_wf.visualise`` does); everything else in the
package goes through :class:`Catalog`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from luno_wf import Record, Workflow, delete_topic, run_state_change_topic, topic
from luno_wf._workflow import engine_of
from luno_wf.visualise import mermaid

__all__ = ["Catalog", "LoadedWorkflow"]


class LoadedWorkflow:
    """One of the user's built workflows: its statuses, graph and codec."""

    def __init__(self, workflow: Workflow[Any, Any]) -> None:
        engine = engine_of(workflow)
        definition = engine.definition
        self.workflow = workflow
        self.name = workflow.name
        self.object_type = definition.object_type
        self.status_type = definition.status_type
        self._names: Mapping[int, str] = definition.names
        self._graph = definition.graph
        self._codec = engine.codec

    def status_name(self, status: int) -> str:
        """The enum member name of ``status`` (its number if the enum lacks it)."""
        return self._names.get(status, str(status))

    def status_value(self, name: str) -> int | None:
        """The value of the member named ``name`` (any case), if there is one."""
        wanted = name.upper()
        for value, member in self._names.items():
            if member.upper() == wanted:
                return value
        return None

    def statuses(self) -> list[tuple[int, str]]:
        """The statuses of the graph as ``(value, name)``, in the graph's order."""
        return [(node, self.status_name(node)) for node in self._graph.node_order()]

    def edges(self) -> list[tuple[int, int]]:
        """The graph's transitions as ``(from, to)`` pairs."""
        return [(n, t) for n in self._graph.node_order() for t in self._graph.transitions(n)]

    def starting(self) -> list[int]:
        """The statuses a run can start in."""
        return self._graph.starting()

    def terminal(self) -> list[int]:
        """The statuses with no way out."""
        return self._graph.terminal()

    def next_statuses(self, status: int) -> list[str]:
        """The names of the statuses ``status`` leads to."""
        return [self.status_name(t) for t in self._graph.transitions(status)]

    def decode(self, record: Record) -> Any:
        """The record's object, decoded to the workflow's object type."""
        return self._codec.decode(record.object)

    def mermaid(self, direction: str = "LR") -> str:
        """The status graph as a Mermaid diagram."""
        return mermaid(self.workflow, direction)


class Catalog:
    """The loaded workflows by name (empty when the surface runs from a store alone)."""

    def __init__(self, workflows: Iterable[Workflow[Any, Any]] = ()) -> None:
        self._by_name: dict[str, LoadedWorkflow] = {}
        for workflow in workflows:
            if not isinstance(workflow, Workflow):
                raise TypeError(f"expected a built luno_wf Workflow, got {workflow!r}")
            if workflow.name in self._by_name:
                raise ValueError(f"two workflows are named {workflow.name!r}")
            self._by_name[workflow.name] = LoadedWorkflow(workflow)

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def get(self, name: str) -> LoadedWorkflow | None:
        """The loaded workflow named ``name``, if any."""
        return self._by_name.get(name)

    def names(self) -> list[str]:
        """The loaded workflows' names, sorted."""
        return sorted(self._by_name)

    def all(self) -> list[LoadedWorkflow]:
        """The loaded workflows, by name."""
        return [self._by_name[name] for name in self.names()]

    def status_name(self, workflow_name: str, status: int, description: str) -> str:
        """A run's status name: the enum's when loaded, else what the record says."""
        loaded = self._by_name.get(workflow_name)
        if loaded is not None:
            return loaded.status_name(status)
        return description or str(status)

    def status_pairs(self, name: str) -> set[tuple[str, int]]:
        """``(workflow, value)`` of every loaded workflow's member named ``name``."""
        pairs: set[tuple[str, int]] = set()
        for loaded in self._by_name.values():
            value = loaded.status_value(name)
            if value is not None:
                pairs.add((loaded.name, value))
        return pairs

    def describe_topic(self, name: str) -> tuple[str, str]:
        """The workflow and status (names) whose events a topic carries, as far as known.

        A loaded workflow's topics are named exactly (``orders-2`` is ``orders`` at
        ``AWAITING_PAYMENT``; ``orders-delete`` carries deletions); any other topic is split
        at its last ``-`` (``refunds-3`` gives ``refunds`` and ``3``).
        """
        for loaded in self._by_name.values():
            if name == delete_topic(loaded.name):
                return loaded.name, "(data deletion)"
            if name == run_state_change_topic(loaded.name):
                return loaded.name, "(run-state change)"
            for value, status in loaded.statuses():
                if name == topic(loaded.name, value):
                    return loaded.name, status
        base, _, suffix = name.rpartition("-")
        return (base, suffix) if base and suffix.isdigit() else ("", "")
