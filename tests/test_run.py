from __future__ import annotations

from datetime import UTC, datetime

import pytest

from luno_wf import Meta, Record, RunState, TypedRecord
from luno_wf.testing import new_testing_run

from .support import Obj, Status

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def record() -> Record:
    return Record(
        workflow_name="wf",
        foreign_id="f",
        run_id="r",
        run_state=RunState.RUNNING,
        status=Status.STARTED,
        object=b"{}",
        created_at=NOW,
        updated_at=NOW,
        meta=Meta(version=1),
    )


def test_status_cannot_be_assigned_a_step_returns_it() -> None:
    run = new_testing_run(record(), Obj(), Status)
    with pytest.raises(AttributeError, match=r"Run\.status is read-only: return the next status"):
        run.status = Status.END  # type: ignore[misc]
    assert run.status is Status.STARTED
    typed = TypedRecord(record(), Status.STARTED, Obj())
    with pytest.raises(AttributeError, match=r"TypedRecord\.status is read-only"):
        typed.status = Status.END  # type: ignore[misc]
    assert typed.status is Status.STARTED


def test_object_can_still_be_replaced() -> None:
    run = new_testing_run(record(), Obj(), Status)
    run.object = Obj(id="new")
    assert run.object == Obj(id="new")
