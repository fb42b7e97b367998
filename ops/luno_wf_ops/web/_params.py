"""Reading filters from a URL's query string (where the runs page keeps them)."""

from __future__ import annotations

from datetime import datetime

from starlette.datastructures import ImmutableMultiDict, QueryParams

from .._model import RunQuery, parse_run_state
from .._parsing import parse_moment

__all__ = ["FILTER_KEYS", "query_from"]

FILTER_KEYS = (
    "workflow",
    "status",
    "run_state",
    "foreign_id",
    "created_after",
    "created_before",
    "updated_after",
    "updated_before",
)


def query_from(params: QueryParams | ImmutableMultiDict[str, str]) -> RunQuery:
    """The run filters of a query string or form; empty values are ignored.

    Raises:
        ValueError: A run state or time that does not parse.

    """

    def values(key: str) -> list[str]:
        return [v.strip() for v in params.getlist(key) if isinstance(v, str) and v.strip()]

    def moment(key: str) -> datetime | None:
        found = values(key)
        return parse_moment(found[0], key) if found else None

    workflow = values("workflow")
    foreign_id = values("foreign_id")
    return RunQuery(
        workflow=workflow[0] if workflow else None,
        statuses=tuple(s for v in values("status") for s in v.split(",") if s.strip()),
        run_states=tuple(parse_run_state(v) for v in values("run_state")),
        foreign_id=foreign_id[0] if foreign_id else None,
        created_after=moment("created_after"),
        created_before=moment("created_before"),
        updated_after=moment("updated_after"),
        updated_before=moment("updated_before"),
    )
