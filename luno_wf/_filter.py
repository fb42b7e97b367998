"""Record filters for :meth:`RecordStore.list <luno_wf.adapter.RecordStore.list>`."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs

from ._record import Record
from ._runstate import RunState

__all__ = [
    "FilterKind",
    "OrderType",
    "RecordFilter",
    "filter_by_created_at_after",
    "filter_by_created_at_before",
    "filter_by_foreign_id",
    "filter_by_run_state",
    "filter_by_status",
    "matches_filters",
]


class OrderType(enum.IntEnum):
    """The order of :meth:`RecordStore.list <luno_wf.adapter.RecordStore.list>` results."""

    ASCENDING = 1
    """Oldest first (in the order runs were first stored)."""
    DESCENDING = 2
    """Newest first."""


class FilterKind(enum.Enum):
    """What a :class:`RecordFilter` compares."""

    FOREIGN_ID = "foreign_id"
    RUN_STATE = "run_state"
    STATUS = "status"
    CREATED_AT_AFTER = "created_at_after"
    CREATED_AT_BEFORE = "created_at_before"


@attrs.frozen
class RecordFilter:
    """One condition on records.

    Filters of different kinds are ANDed; the values of one filter are ORed.
    A later filter of the same kind replaces an earlier one (as in luno).

    Build them with the ``filter_by_*`` functions; adapters read :attr:`kind` and
    :attr:`values`.
    """

    kind: FilterKind
    values: tuple[str | int | datetime, ...]

    def matches(self, record: Record) -> bool:
        """Whether ``record`` satisfies this condition."""
        if self.kind is FilterKind.FOREIGN_ID:
            return record.foreign_id in self.values
        if self.kind is FilterKind.RUN_STATE:
            return int(record.run_state) in self.values
        if self.kind is FilterKind.STATUS:
            return record.status in self.values
        (moment,) = self.values
        assert isinstance(moment, datetime)
        if self.kind is FilterKind.CREATED_AT_AFTER:
            return record.created_at > moment
        return record.created_at < moment


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} needs a timezone-aware datetime, got naive {moment!r}")
    return moment


def filter_by_foreign_id(*foreign_ids: str) -> RecordFilter:
    """Keep records whose foreign id is one of ``foreign_ids``."""
    return RecordFilter(FilterKind.FOREIGN_ID, tuple(str(f) for f in foreign_ids))


def filter_by_run_state(*run_states: RunState) -> RecordFilter:
    """Keep records in one of ``run_states``."""
    return RecordFilter(FilterKind.RUN_STATE, tuple(int(s) for s in run_states))


def filter_by_status(*statuses: int) -> RecordFilter:
    """Keep records at one of ``statuses`` (members of the workflow's status enum)."""
    return RecordFilter(FilterKind.STATUS, tuple(int(s) for s in statuses))


def filter_by_created_at_after(moment: datetime) -> RecordFilter:
    """Keep records created strictly after ``moment``."""
    return RecordFilter(
        FilterKind.CREATED_AT_AFTER, (_aware(moment, "filter_by_created_at_after"),)
    )


def filter_by_created_at_before(moment: datetime) -> RecordFilter:
    """Keep records created strictly before ``moment``."""
    return RecordFilter(
        FilterKind.CREATED_AT_BEFORE, (_aware(moment, "filter_by_created_at_before"),)
    )


def fold_filters(filters: Iterable[RecordFilter]) -> Sequence[RecordFilter]:
    """One filter per kind, the last given winning (luno's ``MakeFilter``)."""
    by_kind: dict[FilterKind, RecordFilter] = {}
    for f in filters:
        by_kind[f.kind] = f
    return tuple(by_kind.values())


def matches_filters(record: Record, filters: Iterable[RecordFilter]) -> bool:
    """Whether ``record`` satisfies every filter (after folding same-kind filters)."""
    return all(f.matches(record) for f in fold_filters(filters))
