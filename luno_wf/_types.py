"""Type aliases for the functions users hand to the builder."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    from ._api import API
    from ._event import ConnectorEvent
    from ._run import Run, TypedRecord

__all__ = [
    "CallbackFunc",
    "CompensateFunc",
    "ConnectorFunc",
    "HookFunc",
    "NoInfer",
    "NoInferStatus",
    "OneOrMore",
    "S",
    "StepFunc",
    "T",
    "TimeoutFunc",
    "TimerFunc",
]

T = TypeVar("T")
"""The type of the object a run carries."""
S = TypeVar("S", bound=enum.IntEnum)
"""The workflow's status enum."""

NoInfer = TypeVar("NoInfer")
"""Never bound by a call: in ``T | NoInfer`` the argument does not take part in solving T.

mypy finds no constraint in a value that could be either union member, so T comes from the
other arguments alone (the workflow), NoInfer is left ``Never``, and a wrong value is reported
against T ("expected Order") instead of as a type parameter mypy cannot infer.
"""
NoInferStatus = TypeVar("NoInferStatus", bound=enum.IntEnum)
"""As :data:`NoInfer`, for statuses: ``S | NoInferStatus``."""

OneOrMore: TypeAlias = tuple[S, *tuple[S, ...]]
"""At least one status: ``*to: *OneOrMore[S]`` makes a call without a destination a type error."""

StepFunc: TypeAlias = "Callable[[Run[T, S]], Awaitable[S]]"
"""A step: receives the run, returns the next status (or a ``Run`` control value)."""
CallbackFunc: TypeAlias = "Callable[[Run[T, S], bytes], Awaitable[S]]"
"""A callback: receives the run and the caller's payload, returns the next status."""
TimerFunc: TypeAlias = "Callable[[Run[T, S], datetime], Awaitable[datetime | None]]"
"""A timer: when the run's timeout should fire (None: no timeout)."""
TimeoutFunc: TypeAlias = "Callable[[Run[T, S], datetime], Awaitable[S]]"
"""A timeout: runs when the timer's moment has passed, returns the next status."""
ConnectorFunc: TypeAlias = "Callable[[API[T, S], ConnectorEvent], Awaitable[None]]"
"""A connector function: turns an external event into workflow calls."""
CompensateFunc: TypeAlias = "Callable[[Run[T, S]], Awaitable[None]]"
"""A compensation: undoes what entering the run's status did (see ``Workflow.compensate``)."""
HookFunc: TypeAlias = "Callable[[TypedRecord[T, S]], Awaitable[None]]"
"""A run-state-change hook: called with the run after it was paused, cancelled or completed."""

AnyFunc: TypeAlias = Callable[..., Awaitable[Any]]
