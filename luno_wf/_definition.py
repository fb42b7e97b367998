"""The frozen description of a workflow that :meth:`Builder.build` hands to the engine."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Generic

import attrs

from ._graph import Graph
from ._options import Options
from ._runstate import RunState
from ._tracing import Tracing
from ._types import AnyFunc, S, T
from .adapter import ConnectorConstructor

__all__ = [
    "CallbackSpec",
    "ConnectorSpec",
    "Definition",
    "Settings",
    "StepSpec",
    "TimeoutSpec",
]


@attrs.frozen
class StepSpec:
    """A step as configured."""

    from_status: enum.IntEnum
    fn: AnyFunc
    to: tuple[enum.IntEnum, ...]
    options: Options


@attrs.frozen
class CallbackSpec:
    """A callback as configured."""

    from_status: enum.IntEnum
    fn: AnyFunc
    to: tuple[enum.IntEnum, ...]


@attrs.frozen
class TimeoutSpec:
    """A timeout as configured; ``index`` tells the timeouts of one status apart."""

    from_status: enum.IntEnum
    index: int
    timer: AnyFunc
    fn: AnyFunc
    to: tuple[enum.IntEnum, ...]


@attrs.frozen
class ConnectorSpec:
    """A connector as configured."""

    name: str
    constructor: ConnectorConstructor
    fn: AnyFunc
    options: Options


@attrs.frozen
class Settings(Generic[T]):
    """The engine-wide choices made at ``build()`` (see :meth:`Builder.build`)."""

    default_options: Options = attrs.field(factory=Options)
    pause_retry: timedelta | None = timedelta(hours=1)
    custom_delete: Callable[[T], Awaitable[T]] | None = None
    outbox: bool = True
    debug: bool = False
    history: bool = True
    history_objects: bool = False
    tracing: Tracing | None = attrs.field(factory=Tracing)


def _frozen_graph(graph: Graph) -> Graph:
    copy = Graph()
    for node in graph.node_order():
        copy.add_node(node)
        for target in graph.transitions(node):
            copy.add(node, target)
    return copy


@attrs.frozen(kw_only=True)
class Definition(Generic[T, S]):
    """What a workflow is, fixed at build time: its types, graph and user functions.

    Made by :meth:`Definition.of` from a builder's parts; the builder may be changed
    afterwards without touching a built workflow. The lookup tables derived from the
    graph (``members``, ``names``, ``allowed``, ``terminal``) are read on every step.
    """

    name: str
    object_type: type[T]
    status_type: type[S]
    graph: Graph
    steps: Mapping[int, StepSpec]
    callbacks: Mapping[int, tuple[CallbackSpec, ...]]
    timeouts: Mapping[int, tuple[TimeoutSpec, ...]]
    timeout_options: Mapping[int, Options]
    connectors: Mapping[str, ConnectorSpec]
    hooks: Mapping[RunState, AnyFunc]
    compensations: Mapping[int, AnyFunc]
    members: Mapping[int, S]
    names: Mapping[int, str]
    allowed: Mapping[int, frozenset[int]]
    terminal: frozenset[int]
    default_start: S

    @classmethod
    def of(
        cls,
        *,
        name: str,
        object_type: type[T],
        status_type: type[S],
        graph: Graph,
        steps: Mapping[int, StepSpec],
        callbacks: Mapping[int, list[CallbackSpec]],
        timeouts: Mapping[int, list[TimeoutSpec]],
        timeout_options: Mapping[int, Options],
        connectors: Mapping[str, ConnectorSpec],
        hooks: Mapping[RunState, AnyFunc],
        compensations: Mapping[int, AnyFunc] | None = None,
    ) -> Definition[T, S]:
        """A definition holding copies of the builder's parts."""
        frozen = _frozen_graph(graph)
        return cls(
            name=name,
            object_type=object_type,
            status_type=status_type,
            graph=frozen,
            steps=MappingProxyType(dict(steps)),
            callbacks=MappingProxyType({k: tuple(v) for k, v in callbacks.items()}),
            timeouts=MappingProxyType({k: tuple(v) for k, v in timeouts.items()}),
            timeout_options=MappingProxyType(dict(timeout_options)),
            connectors=MappingProxyType(dict(connectors)),
            hooks=MappingProxyType(dict(hooks)),
            compensations=MappingProxyType(dict(compensations or {})),
            # Plain dicts (read on every step; a mapping proxy costs a lookup more), never
            # mutated after this.
            members={int(m): m for m in status_type},
            names={int(m): m.name for m in status_type},
            allowed={n: frozenset(frozen.transitions(n)) for n in frozen.nodes()},
            terminal=frozenset(frozen.terminal()),
            default_start=status_type(frozen.starting()[0]),
        )

    def timeout_opts(self, status: int) -> Options:
        """The options given to the timeouts of ``status``."""
        return self.timeout_options.get(status, Options())

    def status_name(self, status: int) -> str:
        """The name of status value ``status`` (its number if the enum lacks it)."""
        return self.names.get(status, str(status))
