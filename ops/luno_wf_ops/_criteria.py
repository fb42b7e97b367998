"""A :class:`RunQuery` resolved against the loaded workflows, and the keyset cursor."""

from __future__ import annotations

from datetime import datetime

import attrs

from luno_wf import Record, RecordFilter, RunState
from luno_wf import filter_by_created_at_after as created_after
from luno_wf import filter_by_created_at_before as created_before
from luno_wf import filter_by_foreign_id as by_foreign_id

from ._catalog import Catalog
from ._model import RunQuery

__all__ = ["Criteria", "decode_cursor", "encode_cursor"]


def _aware(moment: datetime | None, name: str) -> datetime | None:
    if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    return moment


@attrs.frozen(kw_only=True)
class Criteria:
    """What a run must satisfy, in the terms every source can test.

    A status given by name matches a run of a loaded workflow whose status is the enum
    member of that name (any case), as the run is shown; a run of any other workflow
    matches when its record's ``meta.status_description`` is that name. A status given as
    a number matches that value in every workflow.

    On PostgreSQL, the loaded workflows' statuses are plain ``(workflow_name, status)``
    comparisons, which the planner estimates from the table's statistics: a status few runs
    are at is found with one pass over the table rather than by walking it newest first.
    """

    workflow: str | None = None
    status_names: frozenset[str] = frozenset()
    status_values: frozenset[int] = frozenset()
    status_pairs: frozenset[tuple[str, int]] = frozenset()
    loaded: frozenset[str] = frozenset()
    run_states: frozenset[int] = frozenset()
    foreign_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None

    @classmethod
    def of(cls, query: RunQuery, catalog: Catalog) -> Criteria:
        """Resolve ``query``: status names against the loaded workflows' enums."""
        names: set[str] = set()
        values: set[int] = set()
        pairs: set[tuple[str, int]] = set()
        for status in query.statuses:
            text = status.strip()
            if text.lstrip("-").isdigit():
                values.add(int(text))
            elif text:
                names.add(text.upper())
                pairs |= catalog.status_pairs(text)
        return cls(
            workflow=query.workflow or None,
            status_names=frozenset(names),
            status_values=frozenset(values),
            status_pairs=frozenset(pairs),
            loaded=frozenset(catalog.names()) if names else frozenset(),
            run_states=frozenset(int(s) for s in query.run_states),
            foreign_id=query.foreign_id or None,
            created_after=_aware(query.created_after, "created_after"),
            created_before=_aware(query.created_before, "created_before"),
            updated_after=_aware(query.updated_after, "updated_after"),
            updated_before=_aware(query.updated_before, "updated_before"),
        )

    @property
    def has_status(self) -> bool:
        """Whether the status is constrained."""
        return bool(self.status_names or self.status_values)

    def immutable_filters(self) -> list[RecordFilter]:
        """Store filters on what never changes about a run (so positions stay stable)."""
        filters: list[RecordFilter] = []
        if self.foreign_id is not None:
            filters.append(by_foreign_id(self.foreign_id))
        if self.created_after is not None:
            filters.append(created_after(self.created_after))
        if self.created_before is not None:
            filters.append(created_before(self.created_before))
        return filters

    def matches(self, record: Record) -> bool:
        """Whether ``record`` satisfies every condition."""
        if self.workflow is not None and record.workflow_name != self.workflow:
            return False
        if self.run_states and int(record.run_state) not in self.run_states:
            return False
        if self.foreign_id is not None and record.foreign_id != self.foreign_id:
            return False
        if self.has_status and not self._status_matches(record):
            return False
        return self._times_match(record)

    def _status_matches(self, record: Record) -> bool:
        if record.status in self.status_values:
            return True
        if record.workflow_name in self.loaded:
            return (record.workflow_name, record.status) in self.status_pairs
        return record.meta.status_description.upper() in self.status_names

    def _times_match(self, record: Record) -> bool:
        created, updated = record.created_at, record.updated_at
        return not (
            (self.created_after is not None and created <= self.created_after)
            or (self.created_before is not None and created >= self.created_before)
            or (self.updated_after is not None and updated <= self.updated_after)
            or (self.updated_before is not None and updated >= self.updated_before)
        )

    def narrowed(self, run_states: frozenset[RunState]) -> Criteria:
        """These criteria, further limited to runs in ``run_states``."""
        wanted = frozenset(int(s) for s in run_states)
        kept = self.run_states & wanted if self.run_states else wanted
        # An empty set would mean "any": keep an impossible state instead.
        return attrs.evolve(self, run_states=kept or frozenset({int(RunState.UNKNOWN)}))


_CURSOR_PREFIX = "k"


def encode_cursor(position: int) -> str:
    """The opaque cursor of the page after the run at ``position``."""
    return f"{_CURSOR_PREFIX}{position}"


def decode_cursor(cursor: str | None) -> int | None:
    """The position a cursor stands for (None: the first page).

    Raises:
        ValueError: ``cursor`` was not made by :func:`encode_cursor`.

    """
    if not cursor:
        return None
    digits = cursor[len(_CURSOR_PREFIX) :]
    if not cursor.startswith(_CURSOR_PREFIX) or not digits.isdigit():
        raise ValueError(f"invalid page cursor {cursor!r}")
    return int(digits)
