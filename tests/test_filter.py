from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from luno_wf import (
    Meta,
    Record,
    RunState,
    filter_by_created_at_after,
    filter_by_created_at_before,
    filter_by_foreign_id,
    filter_by_run_state,
    filter_by_status,
    matches_filters,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def record(**changes: object) -> Record:
    fields: dict[str, object] = {
        "workflow_name": "wf",
        "foreign_id": "a",
        "run_id": "r",
        "run_state": RunState.RUNNING,
        "status": 2,
        "object": b"{}",
        "created_at": NOW,
        "updated_at": NOW,
        "meta": Meta(),
    }
    fields.update(changes)
    return Record(**fields)  # type: ignore[arg-type]


def test_kinds_are_anded_and_values_ored() -> None:
    r = record()
    assert matches_filters(r, [filter_by_foreign_id("a", "b"), filter_by_status(2, 3)])
    assert not matches_filters(r, [filter_by_foreign_id("a"), filter_by_status(3)])
    assert matches_filters(r, [filter_by_run_state(RunState.PAUSED, RunState.RUNNING)])
    assert not matches_filters(r, [filter_by_foreign_id()])


def test_created_at_bounds_are_strict() -> None:
    r = record()
    assert not matches_filters(r, [filter_by_created_at_after(NOW)])
    assert not matches_filters(r, [filter_by_created_at_before(NOW)])
    assert matches_filters(
        r,
        [
            filter_by_created_at_after(NOW - timedelta(minutes=1)),
            filter_by_created_at_before(NOW + timedelta(minutes=1)),
        ],
    )


def test_a_later_filter_of_a_kind_replaces_an_earlier_one() -> None:
    assert matches_filters(record(), [filter_by_status(3), filter_by_status(2)])


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        filter_by_created_at_after(datetime(2025, 1, 1))
