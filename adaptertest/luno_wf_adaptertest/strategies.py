"""Hypothesis strategies for luno_wf's data: records, metas, run states, filters.

The conformance suite's state machines draw from these; adapter authors may reuse them in
their own property tests. Every value is storable by a durable backend: text has no NUL
characters, times are timezone-aware UTC with microsecond precision, objects are JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from hypothesis import strategies as st

from luno_wf import (
    Meta,
    Record,
    RecordFilter,
    RunState,
    filter_by_created_at_after,
    filter_by_created_at_before,
    filter_by_foreign_id,
    filter_by_run_state,
    filter_by_status,
)

__all__ = [
    "FINISHED_RUN_STATES",
    "UNFINISHED_RUN_STATES",
    "aware_datetimes",
    "json_objects",
    "metas",
    "record_filters",
    "records",
    "run_states",
    "storable_text",
]

UNFINISHED_RUN_STATES = (RunState.INITIATED, RunState.RUNNING, RunState.PAUSED)
"""Run states that hold a foreign id: a second unfinished run of it is refused."""

FINISHED_RUN_STATES = (
    RunState.COMPLETED,
    RunState.CANCELLED,
    RunState.REQUESTED_DATA_DELETED,
    RunState.DATA_DELETED,
)
"""Run states after which a new run of the foreign id may start."""


def storable_text(*, min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    """Unicode text any backend can store: no surrogates, no NUL."""
    alphabet = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
    return st.text(alphabet, min_size=min_size, max_size=max_size)


def aware_datetimes(
    *,
    min_value: datetime = datetime(2000, 1, 1),
    max_value: datetime = datetime(2100, 1, 1),
) -> st.SearchStrategy[datetime]:
    """UTC datetimes between two naive bounds (read as UTC), microsecond precision."""
    return st.datetimes(min_value=min_value, max_value=max_value, timezones=st.just(UTC))


def run_states(states: Sequence[RunState] | None = None) -> st.SearchStrategy[RunState]:
    """Valid run states (``UNKNOWN`` excluded), or one of ``states``."""
    return st.sampled_from(tuple(states) if states is not None else tuple(RunState)[1:])


def json_objects() -> st.SearchStrategy[bytes]:
    """Encoded objects as the engine writes them: small JSON documents."""
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**53), 2**53), storable_text(max_size=10)
    )
    documents = st.dictionaries(storable_text(max_size=8), leaves, max_size=4)
    return documents.map(lambda doc: json.dumps(doc, sort_keys=True).encode())


def metas(*, version: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[Meta]:
    """Record metadata with every field drawn (``version`` from 1 unless given)."""
    return st.builds(
        Meta,
        run_state_reason=storable_text(),
        status_description=storable_text(),
        version=version if version is not None else st.integers(1, 2**31),
        trace_origin=storable_text(max_size=60),
        actor=storable_text(),
        error=storable_text(),
        trace_id=storable_text(max_size=32),
        traceparent=storable_text(max_size=55),
        tracestate=storable_text(max_size=40),
    )


def records(
    *,
    workflow_name: st.SearchStrategy[str] | None = None,
    foreign_id: st.SearchStrategy[str] | None = None,
    run_state: st.SearchStrategy[RunState] | None = None,
    status: st.SearchStrategy[int] | None = None,
    created_at: st.SearchStrategy[datetime] | None = None,
    meta: st.SearchStrategy[Meta] | None = None,
) -> st.SearchStrategy[Record]:
    """Fresh runs (new random run ids) as a trigger would store them: version 1 by default.

    Each argument is a strategy for one field (``updated_at`` equals ``created_at``); the
    defaults draw any storable value.
    """
    return st.builds(
        _record,
        workflow_name=workflow_name if workflow_name is not None else storable_text(min_size=1),
        foreign_id=foreign_id if foreign_id is not None else storable_text(min_size=1),
        run_id=st.uuids(version=4).map(str),
        run_state=run_state if run_state is not None else run_states(),
        status=status if status is not None else st.integers(1, 2**31 - 1),
        object=json_objects(),
        created_at=created_at if created_at is not None else aware_datetimes(),
        meta=meta if meta is not None else metas(version=st.just(1)),
    )


def _record(
    *,
    workflow_name: str,
    foreign_id: str,
    run_id: str,
    run_state: RunState,
    status: int,
    object: bytes,
    created_at: datetime,
    meta: Meta,
) -> Record:
    return Record(
        workflow_name=workflow_name,
        foreign_id=foreign_id,
        run_id=run_id,
        run_state=run_state,
        status=status,
        object=object,
        created_at=created_at,
        updated_at=created_at,
        meta=meta,
    )


def record_filters(
    *,
    foreign_ids: st.SearchStrategy[str] | None = None,
    statuses: st.SearchStrategy[int] | None = None,
    times: st.SearchStrategy[datetime] | None = None,
) -> st.SearchStrategy[RecordFilter]:
    """One record filter of any kind; multi-value kinds get one to three values."""
    ids = foreign_ids if foreign_ids is not None else storable_text(min_size=1)
    status_values = statuses if statuses is not None else st.integers(1, 10)
    moments = times if times is not None else aware_datetimes()
    return st.one_of(
        st.lists(ids, min_size=1, max_size=3).map(lambda v: filter_by_foreign_id(*v)),
        st.lists(status_values, min_size=1, max_size=3).map(lambda v: filter_by_status(*v)),
        st.lists(st.sampled_from(tuple(RunState)[1:]), min_size=1, max_size=3).map(
            lambda v: filter_by_run_state(*v)
        ),
        moments.map(filter_by_created_at_after),
        moments.map(filter_by_created_at_before),
    )
