from __future__ import annotations

import pytest

from luno_wf import RunState

ALLOWED = {
    (RunState.INITIATED, RunState.RUNNING),
    (RunState.INITIATED, RunState.PAUSED),
    (RunState.RUNNING, RunState.PAUSED),
    (RunState.RUNNING, RunState.CANCELLED),
    (RunState.RUNNING, RunState.COMPLETED),
    (RunState.PAUSED, RunState.RUNNING),
    (RunState.PAUSED, RunState.CANCELLED),
    (RunState.COMPLETED, RunState.REQUESTED_DATA_DELETED),
    (RunState.CANCELLED, RunState.REQUESTED_DATA_DELETED),
    (RunState.REQUESTED_DATA_DELETED, RunState.DATA_DELETED),
    (RunState.DATA_DELETED, RunState.REQUESTED_DATA_DELETED),
}


@pytest.mark.parametrize("source", list(RunState))
@pytest.mark.parametrize("target", list(RunState))
def test_controller_transition_table_is_lunos(source: RunState, target: RunState) -> None:
    assert source.can_transition_to(target) == ((source, target) in ALLOWED)


def test_predicates_and_names() -> None:
    finished = {s for s in RunState if s.finished()}
    stopped = {s for s in RunState if s.stopped()}
    assert finished == {
        RunState.COMPLETED,
        RunState.CANCELLED,
        RunState.REQUESTED_DATA_DELETED,
        RunState.DATA_DELETED,
    }
    assert stopped == {
        RunState.PAUSED,
        RunState.CANCELLED,
        RunState.REQUESTED_DATA_DELETED,
        RunState.DATA_DELETED,
    }
    assert not RunState.UNKNOWN.valid() and RunState.DATA_DELETED.valid()
    assert str(RunState.DATA_DELETED) == "Data Deleted"
    assert [int(s) for s in RunState] == list(range(8))
