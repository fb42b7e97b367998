"""Diagrams of a workflow's status graph."""

from __future__ import annotations

from typing import Any

from ._workflow import Workflow, engine_of

__all__ = [
    "mermaid",
]

_DIRECTIONS = ("TB", "LR", "RL", "BT")


def mermaid(wf: Workflow[Any, Any], direction: str = "LR") -> str:
    """A Mermaid ``stateDiagram-v2`` of the workflow's statuses and transitions.

    Every status is a state labelled with its name; starting points are entered from
    ``[*]`` and terminal statuses lead to ``[*]``; a status with several destinations goes
    through a choice node (as luno draws it). Paste it into a ```` ```mermaid ```` block.

    Args:
        wf: The built workflow.
        direction: One of ``TB``, ``LR``, ``RL``, ``BT``.
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(_DIRECTIONS)}, got {direction!r}")
    definition = engine_of(wf).definition
    graph = definition.graph
    lines = [
        "---",
        f"title: Workflow diagram of {wf.name}",
        "---",
        "stateDiagram-v2",
        f"\tdirection {direction}",
    ]
    for node in graph.nodes():
        lines.append(f"\t{node}: {definition.status_name(node)}")
    for node in graph.starting():
        lines.append(f"\t[*] --> {node}")
    for node in graph.node_order():
        targets = graph.transitions(node)
        if len(targets) == 1:
            lines.append(f"\t{node} --> {targets[0]}")
        elif len(targets) > 1:
            lines.append(f"\tstate {node}_branching <<choice>>")
            lines.append(f"\t{node} --> {node}_branching")
            lines.extend(f"\t{node}_branching --> {target}" for target in targets)
    for node in graph.terminal():
        lines.append(f"\t{node} --> [*]")
    return "\n".join(lines) + "\n"
