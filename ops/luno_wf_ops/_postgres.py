"""Runs, counts and the outbox read straight from the PostgreSQL adapter's tables.

Listing pages by keyset on the records' insertion sequence (``seq``, unique and indexed),
newest first: ``WHERE ... AND seq < $cursor ORDER BY seq DESC LIMIT n``, so a page costs
the same however deep it is and stays stable while runs are added and move. The
statements borrow the record store's own connections (its pool, in autocommit mode).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from luno_wf_postgres import PostgresRecordStore
from luno_wf_postgres._pool import AutocommitConnections
from luno_wf_postgres._schema import Statements
from psycopg import sql

from luno_wf import Record, RunState, decode_outbox_data

from ._criteria import Criteria
from ._model import ConsumerLag, OutboxStat
from ._sources import Listed, TallyKey

__all__ = ["PostgresSource"]

_LISTED = (
    "seq, workflow_name, foreign_id, run_id, status, "
    "coalesce(meta->>'StatusDescription', ''), run_state, version, created_at, updated_at, "
    "coalesce(meta->>'RunStateReason', '')"
)
_OUTBOX_SCAN = 10_000
_LAG_CAP = 10_000  # events counted per consumer; more shows as "10,000+"
_LAG_CONSUMERS = 1_000

# The distinct workflow names, one index probe each (a "loose index scan" on
# records_by_workflow): what a page's workflow menu needs, without counting every run.
_WORKFLOW_NAMES = """
WITH RECURSIVE names(name) AS (
    (SELECT workflow_name FROM {s}.records ORDER BY workflow_name LIMIT 1)
    UNION ALL
    SELECT (SELECT r.workflow_name FROM {s}.records r WHERE r.workflow_name > n.name
            ORDER BY r.workflow_name LIMIT 1)
    FROM names n WHERE n.name IS NOT NULL
)
SELECT name FROM names WHERE name IS NOT NULL"""

# Each receiver's backlog on the event log: the events after its cursor (of its shard, for
# a shard's receiver name; an index range on events_by_topic, counted up to a cap, and the
# first one's time) and its claims not yet acknowledged. Every part is an index lookup;
# nothing reads the whole log.
_CONSUMER_LAG = """
SELECT k.topic, k.name,
    (SELECT count(*) FROM (SELECT 1 FROM {s}.events e
        WHERE e.topic = k.topic AND e.id > k.position AND e.id %% k.shards = k.shard - 1
        LIMIT %s) AS w),
    (SELECT e.stored_at FROM {s}.events e
        WHERE e.topic = k.topic AND e.id > k.position AND e.id %% k.shards = k.shard - 1
        ORDER BY e.id LIMIT 1),
    held.n, held.oldest
FROM {s}.cursors k
CROSS JOIN LATERAL (
    SELECT count(*) AS n, min(e.stored_at) AS oldest
    FROM {s}.claims c LEFT JOIN {s}.events e ON e.id = c.event_id
    WHERE c.topic = k.topic AND c.name = k.name
) AS held
ORDER BY k.topic, k.name
LIMIT %s"""


def _where(criteria: Criteria, before: int | None = None) -> tuple[sql.Composable, list[Any]]:
    """The WHERE clause of ``criteria`` (empty if none) and its parameters."""
    parts: list[sql.Composable] = []
    params: list[Any] = []

    def add(text: str, *values: Any) -> None:
        parts.append(sql.SQL(text))
        params.extend(values)

    if criteria.workflow is not None:
        add("workflow_name = %s", criteria.workflow)
    if criteria.foreign_id is not None:
        add("foreign_id = %s", criteria.foreign_id)
    if criteria.run_states:
        add("run_state = ANY(%s::integer[])", sorted(criteria.run_states))
    if criteria.has_status:
        arms: list[sql.Composable] = []
        if criteria.status_values:
            arms.append(sql.SQL("status = ANY(%s::bigint[])"))
            params.append(sorted(criteria.status_values))
        for workflow, value in sorted(criteria.status_pairs):
            arms.append(sql.SQL("(workflow_name = %s AND status = %s)"))
            params.extend([workflow, value])
        if criteria.status_names:
            described = "upper(meta->>'StatusDescription') = ANY(%s::text[])"
            if criteria.loaded:  # a loaded workflow's runs match by their enum (above)
                described = f"(workflow_name <> ALL(%s::text[]) AND {described})"
                params.append(sorted(criteria.loaded))
            arms.append(sql.SQL(described))
            params.append(sorted(criteria.status_names))
        parts.append(sql.SQL("(") + sql.SQL(" OR ").join(arms) + sql.SQL(")"))
    for column, op, moment in (
        ("created_at", ">", criteria.created_after),
        ("created_at", "<", criteria.created_before),
        ("updated_at", ">", criteria.updated_after),
        ("updated_at", "<", criteria.updated_before),
    ):
        if moment is not None:
            add(f"{column} {op} %s", moment)
    if before is not None:
        add("seq < %s", before)
    if not parts:
        return sql.SQL(""), params
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params


def _listed(row: tuple[Any, ...]) -> Listed:
    seq, workflow, foreign_id, run_id, status, description, state, version, created, updated = row[
        :10
    ]
    return Listed(
        position=int(seq),
        workflow_name=workflow,
        foreign_id=foreign_id,
        run_id=run_id,
        status=int(status),
        description=description,
        run_state=RunState(state),
        version=int(version),
        created_at=created.astimezone(UTC),
        updated_at=updated.astimezone(UTC),
        reason=row[10],
    )


class PostgresSource:
    """A :class:`~luno_wf_ops._sources.RunSource` on a :class:`PostgresRecordStore`'s tables."""

    def __init__(self, store: PostgresRecordStore) -> None:
        # The store's connections and its schema's statements: the same pool, the same
        # schema, the same "run migrate()" message when the tables are missing.
        self._conns: AutocommitConnections = store._conns
        self._sql: Statements = store._sql

    async def _fetch(
        self, template: str, params: list[Any], **parts: sql.Composable
    ) -> list[tuple[Any, ...]]:
        query = self._sql.compose(template, **parts)
        async with self._conns.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def page(
        self, criteria: Criteria, before: int | None, limit: int
    ) -> tuple[list[Listed], bool]:
        """See :meth:`RunSource.page`: one keyset query on ``seq``."""
        where, params = _where(criteria, before)
        rows = await self._fetch(
            f"SELECT {_LISTED} FROM {{s}}.records{{where}} ORDER BY seq DESC LIMIT %s",
            [*params, limit + 1],
            where=where,
        )
        listed = [_listed(row) for row in rows]
        return listed[:limit], len(listed) > limit

    async def count(self, criteria: Criteria) -> int:
        """See :meth:`RunSource.count`."""
        where, params = _where(criteria)
        rows = await self._fetch("SELECT count(*) FROM {s}.records{where}", params, where=where)
        return int(rows[0][0])

    async def tally(self, criteria: Criteria, loaded: frozenset[str]) -> dict[TallyKey, int]:
        """See :meth:`RunSource.tally`: one GROUP BY.

        The description (read from each record's JSON meta, the costly part) is read only
        for the runs of workflows not loaded.
        """
        where, params = _where(criteria)
        rows = await self._fetch(
            "SELECT workflow_name, status,"
            " max(coalesce(meta->>'StatusDescription', ''))"
            " FILTER (WHERE workflow_name <> ALL(%s::text[])),"
            " run_state, count(*) FROM {s}.records{where}"
            " GROUP BY workflow_name, status, run_state",
            [sorted(loaded), *params],
            where=where,
        )
        return {(w, int(s), d or "", RunState(r)): int(n) for w, s, d, r, n in rows}

    async def workflow_runs(self) -> dict[str, int]:
        """See :meth:`RunSource.workflow_runs`."""
        rows = await self._fetch(
            "SELECT workflow_name, count(*) FROM {s}.records GROUP BY workflow_name", []
        )
        return {name: int(n) for name, n in rows}

    async def workflow_names(self) -> list[str]:
        """See :meth:`RunSource.workflow_names`: one index probe per workflow."""
        rows = await self._fetch(_WORKFLOW_NAMES, [])
        return [name for (name,) in rows]

    async def consumer_lag(self) -> list[ConsumerLag] | None:
        """See :meth:`RunSource.consumer_lag`: the event log's cursors and claims."""
        rows = await self._fetch(_CONSUMER_LAG, [_LAG_CAP + 1, _LAG_CONSUMERS])
        lags = []
        for topic, name, waiting, first_waiting, claimed, oldest_claimed in rows:
            moments = [m.astimezone(UTC) for m in (first_waiting, oldest_claimed) if m]
            lags.append(
                ConsumerLag(
                    topic=topic,
                    consumer=name,
                    workflow_name="",
                    status_name="",
                    waiting=min(int(waiting), _LAG_CAP),
                    waiting_capped=int(waiting) > _LAG_CAP,
                    claimed=int(claimed),
                    oldest_unacked=min(moments) if moments else None,
                )
            )
        return lags

    async def outbox(self, workflow_names: list[str]) -> list[OutboxStat]:
        """See :meth:`RunSource.outbox`: every workflow with rows (names are not needed)."""
        rows = await self._fetch(
            "SELECT workflow_name, count(*), min(created_at) FROM {s}.outbox"
            " GROUP BY workflow_name ORDER BY workflow_name",
            [],
        )
        return [
            OutboxStat(workflow_name=name, pending=int(n), oldest=oldest.astimezone(UTC))
            for name, n, oldest in rows
        ]

    async def outbox_pending(self, record: Record) -> bool | None:
        """See :meth:`RunSource.outbox_pending` (looks at the oldest 10,000 rows)."""
        rows = await self._fetch(
            "SELECT data FROM {s}.outbox WHERE workflow_name = %s ORDER BY seq LIMIT %s",
            [record.workflow_name, _OUTBOX_SCAN],
        )
        for (data,) in rows:
            try:
                if decode_outbox_data(bytes(data)).run_id == record.run_id:
                    return True
            except ValueError:
                continue
        return False

    async def timeouts(self, record: Record) -> list[tuple[int, datetime]] | None:
        """See :meth:`RunSource.timeouts`: the run's rows of the timeouts table."""
        rows = await self._fetch(
            "SELECT status, expire_at FROM {s}.timeouts"
            " WHERE run_id = %s AND NOT completed AND NOT cancelled ORDER BY expire_at",
            [record.run_id],
        )
        return [(int(status), expire.astimezone(UTC)) for status, expire in rows]
