from __future__ import annotations

import enum
from datetime import timedelta
from typing import Generic, TypeVar

import attrs
import pytest

from luno_wf import Builder, Run, Workflow
from luno_wf._workflow import engine_of
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer

from .support import Obj, Status


async def to_middle(r: Run[Obj, Status]) -> Status:
    return Status.MIDDLE


async def to_end(r: Run[Obj, Status]) -> Status:
    return Status.END


def build(b: Builder[Obj, Status]) -> Workflow[Obj, Status]:
    return b.build(MemStreamer(), MemRecordStore(), MemRoleScheduler())


def test_second_step_on_a_status_is_rejected() -> None:
    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, to_middle, Status.MIDDLE)
    with pytest.raises(ValueError, match=r"already exists\. Only one Step"):
        b.add_step(Status.STARTED, to_end, Status.END)


def test_reserved_status_is_rejected_as_from_and_to() -> None:
    b = Builder("wf", Obj, Status)
    with pytest.raises(ValueError, match="reserved node as 'from'"):
        b.add_step(Status.UNKNOWN, to_middle, Status.MIDDLE)
    with pytest.raises(ValueError, match="reserved node as 'to'"):
        b.add_step(Status.STARTED, to_middle, Status.UNKNOWN)
    assert not b.steps


def test_status_of_another_enum_is_rejected() -> None:
    class Other(enum.IntEnum):
        X = 1

    b = Builder("wf", Obj, Status)
    with pytest.raises(TypeError, match="member of Status"):
        b.add_step(Other.X, to_middle, Status.MIDDLE)  # type: ignore[arg-type]


def test_step_without_destination_is_rejected() -> None:
    b = Builder("wf", Obj, Status)
    with pytest.raises(ValueError, match="at least one destination"):
        b.add_step(Status.STARTED, to_middle)  # type: ignore[call-arg]


def test_sync_function_is_rejected() -> None:
    def sync_step(r: Run[Obj, Status]) -> Status:
        return Status.MIDDLE

    b = Builder("wf", Obj, Status)
    with pytest.raises(TypeError, match="async function"):
        b.add_step(Status.STARTED, sync_step, Status.MIDDLE)  # type: ignore[arg-type]


def test_timeouts_need_a_timeout_store() -> None:
    async def timer(r: Run[Obj, Status], now: object) -> None:
        return None

    async def fire(r: Run[Obj, Status], now: object) -> Status:
        return Status.END

    b = Builder("wf", Obj, Status)
    b.add_timeout(Status.STARTED, timer, fire, Status.END)
    with pytest.raises(ValueError, match="without providing TimeoutStore"):
        build(b)


def test_workflow_needs_a_starting_point() -> None:
    b = Builder("wf", Obj, Status)
    b.add_step(Status.STARTED, to_middle, Status.STARTED)
    with pytest.raises(ValueError, match="at least one starting point"):
        build(b)


def test_timeout_options_that_make_no_sense_are_rejected() -> None:
    async def timer(r: Run[Obj, Status], now: object) -> None:
        return None

    async def fire(r: Run[Obj, Status], now: object) -> Status:
        return Status.END

    b = Builder("wf", Obj, Status)
    with pytest.raises(TypeError, match="unexpected keyword argument 'parallel_count'"):
        b.add_timeout(Status.STARTED, timer, fire, Status.END, parallel_count=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'lag'"):
        b.add_timeout(Status.STARTED, timer, fire, Status.END, lag=timedelta(seconds=1))  # type: ignore[call-arg]
    assert not b.timeouts


def test_bad_option_values_name_the_option() -> None:
    b = Builder("wf", Obj, Status)
    with pytest.raises(ValueError, match="parallel_count"):
        b.add_step(Status.STARTED, to_middle, Status.MIDDLE, parallel_count=-1)
    with pytest.raises(TypeError, match="polling_frequency"):
        b.add_step(Status.STARTED, to_middle, Status.MIDDLE, polling_frequency=5)  # type: ignore[arg-type]


def test_connector_names_are_unique() -> None:
    from luno_wf.memory import MemConnector

    async def fn(api: object, event: object) -> None:
        return None

    b = Builder("wf", Obj, Status)
    b.add_connector("c", MemConnector(), fn)
    with pytest.raises(ValueError, match="unique"):
        b.add_connector("c", MemConnector(), fn)


def test_default_starting_point_is_first_starting_node() -> None:
    b = Builder("wf", Obj, Status)
    b.add_step(Status.MIDDLE, to_end, Status.END)
    b.add_step(Status.STARTED, to_middle, Status.MIDDLE)
    wf = build(b)
    # MIDDLE was seen first but is the target of STARTED's edge: STARTED is the only start.
    assert engine_of(wf).definition.default_start is Status.STARTED


def test_callback_and_timeout_without_destination_are_rejected() -> None:
    async def confirm(r: Run[Obj, Status], payload: bytes) -> Status:
        return Status.END

    async def timer(r: Run[Obj, Status], now: object) -> None:
        return None

    async def fire(r: Run[Obj, Status], now: object) -> Status:
        return Status.END

    b = Builder("wf", Obj, Status)
    with pytest.raises(ValueError, match=r"add_callback\(.*at least one destination"):
        b.add_callback(Status.STARTED, confirm)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"add_timeout\(.*at least one destination"):
        b.add_timeout(Status.STARTED, timer, fire)  # type: ignore[call-arg]
    assert not b.callbacks
    assert not b.timeouts


P = TypeVar("P")
Q = TypeVar("Q")


@attrs.define
class Envelope(Generic[P]):
    payload: P


@attrs.define
class Pair(Generic[P, Q]):
    first: P
    second: Q


def test_generic_object_type_needs_its_type_arguments() -> None:
    with pytest.raises(TypeError, match=r"Envelope is generic but has no type arguments for P"):
        Builder("wf", Envelope, Status)
    with pytest.raises(TypeError, match=r"Pair is generic .* for P, Q: .* Pair\[\.\.\., \.\.\.\]"):
        Builder("wf", Pair, Status)
    with pytest.raises(TypeError, match=r"Envelope\[list\[~Q\]\] is generic .* for Q"):
        Builder("wf", Envelope[list[Q]], Status)  # type: ignore[valid-type]
    Builder("wf", Envelope[Obj], Status)
    Builder("wf", Pair[Obj, int], Status)
