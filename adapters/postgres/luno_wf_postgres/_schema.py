"""The schema every PostgreSQL adapter reads and writes, and :func:`migrate` that creates it.

Everything lives in one PostgreSQL schema (``luno_wf`` unless told otherwise), so several
independent deployments (or test runs) can share a database. The schema name is validated
and always quoted with :class:`psycopg.sql.Identifier`; it is never pasted into SQL text.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

__all__ = ["DEFAULT_SCHEMA", "migrate", "notify_channel", "schema_identifier"]

DEFAULT_SCHEMA = "luno_wf"

# Leaves room for the "_events" suffix of the notification channel within PostgreSQL's
# 63-byte identifier limit.
_MAX_SCHEMA_LENGTH = 50
_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def schema_identifier(schema: str) -> sql.Identifier:
    """Validate ``schema`` as a plain SQL identifier and return it quoted.

    Raises:
        ValueError: ``schema`` is empty, too long, or not letters, digits and underscores
            starting with a letter or underscore.

    """
    if not isinstance(schema, str) or not _SCHEMA_RE.match(schema):
        raise ValueError(
            f"schema must be letters, digits and underscores, not starting with a digit; "
            f"got {schema!r}"
        )
    if len(schema) > _MAX_SCHEMA_LENGTH:
        raise ValueError(
            f"schema must be at most {_MAX_SCHEMA_LENGTH} characters, got {len(schema)}: {schema!r}"
        )
    return sql.Identifier(schema)


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which senders announce new events of ``schema``."""
    return f"{schema}_events"


def listening_key(schema: str) -> str:
    """The advisory lock every session listening on ``schema``'s channel holds, shared.

    Never a topic's lock (those are ``<schema>.events:<topic>``).
    """
    return f"{schema}.listening"


# One statement per entry, in order. `{s}` is the quoted schema. Every statement is
# idempotent, so migrate() can run at every start-up.
_STATEMENTS: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    # Runs. `seq` orders list() and breaks created_at ties in latest(); `version` is the
    # compare-and-set key (it repeats meta's Version, kept as luno's JSON for Go readers).
    # fillfactor leaves room for HOT updates: a step changes no indexed column.
    """CREATE TABLE IF NOT EXISTS {s}.records (
    run_id        text        PRIMARY KEY,
    seq           bigint      GENERATED ALWAYS AS IDENTITY,
    workflow_name text        NOT NULL,
    foreign_id    text        NOT NULL,
    run_state     integer     NOT NULL,
    status        bigint      NOT NULL,
    object        bytea       NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       bigint      NOT NULL,
    meta          jsonb       NOT NULL
) WITH (fillfactor = 80)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS records_by_seq ON {s}.records (seq)",
    "CREATE INDEX IF NOT EXISTS records_by_workflow ON {s}.records (workflow_name, seq)",
    """CREATE INDEX IF NOT EXISTS records_by_foreign_id
    ON {s}.records (workflow_name, foreign_id, created_at, seq)""",
    # At most one unfinished run (not Completed 5, Cancelled 4, Data Deleted 6, Requested
    # Data Deleted 7) per foreign id: the store's WorkflowInProgress comes from here.
    """CREATE UNIQUE INDEX IF NOT EXISTS records_one_unfinished
    ON {s}.records (workflow_name, foreign_id) WHERE run_state NOT IN (4, 5, 6, 7)""",
    """CREATE TABLE IF NOT EXISTS {s}.outbox (
    id            text        PRIMARY KEY,
    seq           bigint      GENERATED ALWAYS AS IDENTITY,
    workflow_name text        NOT NULL,
    data          bytea       NOT NULL,
    created_at    timestamptz NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS outbox_by_workflow ON {s}.outbox (workflow_name, seq)",
    # One entry per write of a record, written by the same statement. `at` is the record's
    # updated_at; `object` is NULL unless the workflow keeps object snapshots.
    """CREATE TABLE IF NOT EXISTS {s}.history (
    run_id        text        NOT NULL,
    version       bigint      NOT NULL,
    workflow_name text        NOT NULL,
    foreign_id    text        NOT NULL,
    status        bigint      NOT NULL,
    run_state     integer     NOT NULL,
    reason        text        NOT NULL,
    actor         text        NOT NULL,
    at            timestamptz NOT NULL,
    error         text        NOT NULL,
    trace_id      text        NOT NULL,
    object        bytea,
    PRIMARY KEY (run_id, version)
)""",
    # Pruning walks old entries in `at` order. Entries arrive in roughly increasing `at`,
    # so inserts land on the index's rightmost page.
    "CREATE INDEX IF NOT EXISTS history_by_at ON {s}.history (at)",
    # Cancelled rows are kept (flagged) so that a repeated create of the same
    # (run_id, status, timer, version) stays ignored, as the contract requires.
    """CREATE TABLE IF NOT EXISTS {s}.timeouts (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_name text        NOT NULL,
    foreign_id    text        NOT NULL,
    run_id        text        NOT NULL,
    status        bigint      NOT NULL,
    timer         bigint      NOT NULL DEFAULT 0,
    version       bigint      NOT NULL DEFAULT 0,
    completed     boolean     NOT NULL DEFAULT false,
    cancelled     boolean     NOT NULL DEFAULT false,
    expire_at     timestamptz NOT NULL,
    created_at    timestamptz NOT NULL
)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS timeouts_once
    ON {s}.timeouts (run_id, status, timer, version)""",
    """CREATE INDEX IF NOT EXISTS timeouts_pending
    ON {s}.timeouts (workflow_name, status, expire_at) WHERE NOT completed AND NOT cancelled""",
    # The event log. Ids are global (an event's id is the same for every receiver) and,
    # within a topic, committed in id order (see send_events), so a cursor never skips.
    """CREATE TABLE IF NOT EXISTS {s}.events (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text        NOT NULL,
    foreign_id    text        NOT NULL,
    type          bigint      NOT NULL,
    headers       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now()
)""",
    "CREATE INDEX IF NOT EXISTS events_by_topic ON {s}.events (topic, id)",
    # One durable position per (topic, receiver name): every event of the topic with an id
    # at or below `position` has been handed out, and is acked unless a claim row remains.
    """CREATE TABLE IF NOT EXISTS {s}.cursors (
    topic         text        NOT NULL,
    name          text        NOT NULL,
    position      bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, name)
)""",
    # A receiver name that takes one shard of its topic (luno_wf.adapter.ShardedStreamer):
    # the events whose id modulo `shards` is `shard - 1`; its cursor still moves past the
    # other shards' events. Every name takes shard 1 of 1 (every event) unless told.
    "ALTER TABLE {s}.cursors ADD COLUMN IF NOT EXISTS shard integer NOT NULL DEFAULT 1",
    "ALTER TABLE {s}.cursors ADD COLUMN IF NOT EXISTS shards integer NOT NULL DEFAULT 1",
    # Handed out, not yet acked. A claim whose lease has lapsed (its receiver closed or died)
    # is handed out again to the next receiver of the name.
    """CREATE TABLE IF NOT EXISTS {s}.claims (
    topic         text        NOT NULL,
    name          text        NOT NULL,
    event_id      bigint      NOT NULL,
    owner         text        NOT NULL,
    lease_until   timestamptz NOT NULL,
    PRIMARY KEY (topic, name, event_id)
)""",
    # Append events to a topic. Senders of one topic are serialised by a transaction-scoped
    # advisory lock taken before the ids are drawn, and the lock is released only after the
    # commit is visible: so ids of a topic become visible in increasing order.
    """CREATE OR REPLACE FUNCTION {s}.send_events(
    p_topic text, p_foreign_ids text[], p_types bigint[], p_headers jsonb[],
    p_created_at timestamptz
) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended({lock_prefix} || p_topic, 0));
    INSERT INTO {s}.events (topic, foreign_id, type, headers, created_at)
    SELECT p_topic, u.f, u.t, u.h, p_created_at
    FROM unnest(p_foreign_ids, p_types, p_headers) WITH ORDINALITY AS u(f, t, h, n)
    ORDER BY u.n;
    PERFORM pg_notify({channel}, p_topic);
END
$fn$""",
    # Claim up to p_limit events for one receiver, after recording its acks and renewing
    # the leases of the events it still holds: lapsed claims of the name first (oldest
    # first), then, up to the limit, the next events after the name's cursor. A claim has
    # lapsed when its lease has, or when its owner ("<id>@<backend pid>") names a server
    # session that no longer exists: the owner's process died, so its events go at once.
    # The cursor row lock serialises receivers of one name, so no event goes to two.
    """CREATE OR REPLACE FUNCTION {s}.claim_events(
    p_topic text, p_name text, p_owner text, p_limit integer, p_lease interval,
    p_acked bigint[], p_held bigint[]
) RETURNS TABLE (id bigint, foreign_id text, type bigint, headers jsonb,
                 created_at timestamptz)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_taken bigint;
    v_from bigint;
    v_to bigint;
    v_shard integer;
    v_shards integer;
    v_found bigint;
    v_last bigint;
BEGIN
    -- Nothing to record and nothing to hand out: return without writing, so that an idle
    -- receiver's poll costs no transaction id and no WAL flush.
    IF cardinality(p_acked) = 0 AND cardinality(p_held) = 0
        AND NOT EXISTS (
            SELECT 1 FROM {s}.claims l
            WHERE l.topic = p_topic AND l.name = p_name AND (l.lease_until < now() OR
                CASE WHEN l.owner = p_owner OR strpos(l.owner, '@') = 0 THEN false
                ELSE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                                 WHERE a.pid = split_part(l.owner, '@', 2)::integer) END))
        AND NOT EXISTS (
            SELECT 1 FROM {s}.events e
            WHERE e.topic = p_topic AND e.id > (
                SELECT k.position FROM {s}.cursors k
                WHERE k.topic = p_topic AND k.name = p_name))
    THEN
        RETURN;
    END IF;
    -- Claims and acks need not wait for the WAL flush: if a crash loses them, the events
    -- are handed out again, which at-least-once delivery allows.
    PERFORM set_config('synchronous_commit', 'off', true);
    IF cardinality(p_acked) > 0 THEN
        DELETE FROM {s}.claims c
        WHERE c.topic = p_topic AND c.name = p_name AND c.event_id = ANY (p_acked);
    END IF;
    IF cardinality(p_held) > 0 THEN
        UPDATE {s}.claims c SET lease_until = now() + p_lease
        WHERE c.topic = p_topic AND c.name = p_name AND c.event_id = ANY (p_held)
          AND c.owner = p_owner;
    END IF;

    RETURN QUERY
    WITH taken AS (
        UPDATE {s}.claims c SET owner = p_owner, lease_until = now() + p_lease
        FROM (
            SELECT l.event_id FROM {s}.claims l
            WHERE l.topic = p_topic AND l.name = p_name AND (l.lease_until < now() OR
                CASE WHEN l.owner = p_owner OR strpos(l.owner, '@') = 0 THEN false
                ELSE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                                 WHERE a.pid = split_part(l.owner, '@', 2)::integer) END)
            ORDER BY l.event_id LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) AS lapsed
        WHERE c.topic = p_topic AND c.name = p_name AND c.event_id = lapsed.event_id
        RETURNING c.event_id
    )
    SELECT e.id, e.foreign_id, e.type, e.headers, e.created_at
    FROM {s}.events e JOIN taken ON e.id = taken.event_id
    ORDER BY e.id;
    GET DIAGNOSTICS v_taken = ROW_COUNT;
    IF v_taken >= p_limit THEN
        RETURN;
    END IF;

    SELECT k.position, k.shard, k.shards INTO v_from, v_shard, v_shards FROM {s}.cursors k
    WHERE k.topic = p_topic AND k.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'luno_wf: no cursor for topic % and receiver name %', p_topic, p_name;
    END IF;
    -- The next events of the name's shard (every event, for a name of one shard) and,
    -- when fewer are there than asked for, the topic's last event, up to which the cursor
    -- then moves (past the other shards' events): one statement, one snapshot.
    SELECT max(x.id), count(x.id),
           (SELECT max(t.id) FROM {s}.events t WHERE t.topic = p_topic AND t.id > v_from)
    INTO v_to, v_found, v_last
    FROM (
        SELECT e.id FROM {s}.events e
        WHERE e.topic = p_topic AND e.id > v_from AND e.id % v_shards = v_shard - 1
        ORDER BY e.id LIMIT p_limit - v_taken
    ) AS x;
    IF v_found < p_limit - v_taken THEN
        v_to := v_last;
    END IF;
    IF v_to IS NULL THEN
        RETURN;
    END IF;
    UPDATE {s}.cursors k SET position = v_to, updated_at = now()
    WHERE k.topic = p_topic AND k.name = p_name;
    INSERT INTO {s}.claims (topic, name, event_id, owner, lease_until)
    SELECT p_topic, p_name, e.id, p_owner, now() + p_lease FROM {s}.events e
    WHERE e.topic = p_topic AND e.id > v_from AND e.id <= v_to
      AND e.id % v_shards = v_shard - 1;
    RETURN QUERY
    SELECT e.id, e.foreign_id, e.type, e.headers, e.created_at FROM {s}.events e
    WHERE e.topic = p_topic AND e.id > v_from AND e.id <= v_to
      AND e.id % v_shards = v_shard - 1
    ORDER BY e.id;
END
$fn$""",
    # Hand the event p_id, just appended by the caller, straight to the receiver p_owner of
    # the name p_name: claimed by it and the name's cursor moved to the event, if and only
    # if the event is of the name's shard and the name had every earlier event of its
    # shard handed out. Called by a record store's write, in its statement, holding the
    # topic's lock: so every earlier event of the topic is committed, and this function's
    # statements (a volatile function's, each with a snapshot of its own) see them all,
    # and the cursor's newest position. Returns whether it handed the event over.
    # The cursor is read (and locked) first, so that the look for earlier events is an
    # index range between two known ids, however many events the topic holds.
    """CREATE OR REPLACE FUNCTION {s}.hand_off(
    p_topic text, p_name text, p_owner text, p_lease interval, p_id bigint
) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    v_from bigint;
    v_shard integer;
    v_shards integer;
BEGIN
    SELECT k.position, k.shard, k.shards INTO v_from, v_shard, v_shards FROM {s}.cursors k
    WHERE k.topic = p_topic AND k.name = p_name FOR UPDATE;
    IF NOT FOUND OR v_from >= p_id OR p_id % v_shards <> v_shard - 1 THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM {s}.events e
               WHERE e.topic = p_topic AND e.id > v_from AND e.id < p_id
                 AND e.id % v_shards = v_shard - 1) THEN
        RETURN false;
    END IF;
    UPDATE {s}.cursors k SET position = p_id, updated_at = now()
    WHERE k.topic = p_topic AND k.name = p_name;
    INSERT INTO {s}.claims (topic, name, event_id, owner, lease_until)
    VALUES (p_topic, p_name, p_id, p_owner, now() + p_lease);
    RETURN true;
END
$fn$""",
    # The same for several receivers (of different names) at once: returns the names of
    # those it handed the event to.
    """CREATE OR REPLACE FUNCTION {s}.hand_off(
    p_topic text, p_names text[], p_owners text[], p_lease interval, p_id bigint
) RETURNS text[] LANGUAGE plpgsql AS $fn$
DECLARE
    v_handed text[] := '{{}}';
BEGIN
    FOR i IN 1 .. cardinality(p_names) LOOP
        IF {s}.hand_off(p_topic, p_names[i], p_owners[i], p_lease, p_id) THEN
            v_handed := v_handed || p_names[i];
        END IF;
    END LOOP;
    RETURN v_handed;
END
$fn$""",
    # claim_events, and with each event the record of the run it announces (its foreign
    # id), if any: a record store writing its events itself reads them from here instead
    # of looking them up. Read by a statement of its own, after the claim, so every
    # claimed event's record write (committed with the event) is visible.
    """CREATE OR REPLACE FUNCTION {s}.claim_events_with_records(
    p_topic text, p_name text, p_owner text, p_limit integer, p_lease interval,
    p_acked bigint[], p_held bigint[]
) RETURNS TABLE (id bigint, foreign_id text, type bigint, headers jsonb,
                 created_at timestamptz, r_run_id text, r_workflow_name text,
                 r_foreign_id text, r_run_state integer, r_status bigint, r_object bytea,
                 r_created_at timestamptz, r_updated_at timestamptz, r_version bigint,
                 r_meta text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
BEGIN
    SELECT array_agg(c.id) INTO v_ids
    FROM {s}.claim_events(p_topic, p_name, p_owner, p_limit, p_lease, p_acked, p_held) AS c;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT e.id, e.foreign_id, e.type, e.headers, e.created_at, r.run_id, r.workflow_name,
           r.foreign_id, r.run_state, r.status, r.object, r.created_at, r.updated_at,
           r.version, r.meta::text
    FROM {s}.events e LEFT JOIN {s}.records r ON r.run_id = e.foreign_id
    WHERE e.id = ANY (v_ids)
    ORDER BY e.id;
END
$fn$""",
)


# Events consumers set aside (luno_wf.DeadLetter), kept until replayed or deleted.
_DEAD_LETTERS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS {s}.dead_letters (
    seq           bigint      GENERATED ALWAYS AS IDENTITY,
    id            text        PRIMARY KEY,
    workflow_name text        NOT NULL,
    process_name  text        NOT NULL,
    topic         text        NOT NULL,
    event_id      bigint      NOT NULL,
    foreign_id    text        NOT NULL,
    type          bigint      NOT NULL,
    headers       jsonb       NOT NULL,
    published_at  timestamptz NOT NULL,
    reason        text        NOT NULL,
    at            timestamptz NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS dead_letters_by_workflow ON {s}.dead_letters (workflow_name, seq)",
)


# The fleet of PostgresRoleScheduler: its members and the leases of the roles they hold.
# `namespace` keeps fleets apart within one schema. A member (one scheduler in one process)
# beats every heartbeat interval, setting `expires_at` to the database's now() plus the
# lease duration; a member whose `expires_at` has passed is not live. `roles` lists the
# roles its callers ask for; the roles are spread over the live members that ask for them.
# A lease is held by one member until `expires_at` (now() plus the lease duration at its
# last renewal); a lapsed lease may be taken by the role's owner.
_FLEET_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS {s}.members (
    namespace     text        NOT NULL,
    member_id     text        NOT NULL,
    roles         text[]      NOT NULL DEFAULT '{{}}',
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    joined_at     timestamptz NOT NULL DEFAULT now(),
    host          text        NOT NULL DEFAULT '',
    pid           integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, member_id)
)""",
    """CREATE TABLE IF NOT EXISTS {s}.role_leases (
    namespace     text        NOT NULL,
    role          text        NOT NULL,
    member_id     text        NOT NULL,
    expires_at    timestamptz NOT NULL,
    acquired_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, role)
)""",
    "CREATE INDEX IF NOT EXISTS role_leases_by_member ON {s}.role_leases (namespace, member_id)",
)


def migration_statements(schema: str = DEFAULT_SCHEMA) -> list[sql.Composed]:
    """The statements :func:`migrate` runs, in order, for ``schema``."""
    params = {
        "s": schema_identifier(schema),
        "lock_prefix": sql.Literal(f"{schema}.events:"),
        "channel": sql.Literal(notify_channel(schema)),
    }
    statements = (*_STATEMENTS, *_DEAD_LETTERS, *_FLEET_STATEMENTS)
    return [sql.SQL(statement).format(**params) for statement in statements]


async def migrate(
    target: AsyncConnectionPool[Any] | AsyncConnection[Any] | str,
    schema: str = DEFAULT_SCHEMA,
) -> None:
    """Create the schema's tables and indexes if missing, and (re)create its functions.

    Idempotent: running it again, or from several processes at once, is safe (a
    transaction-scoped advisory lock serialises concurrent runs). Nothing is ever dropped,
    and existing tables are not altered.

    Args:
        target: An open :class:`psycopg_pool.AsyncConnectionPool`, an
            :class:`psycopg.AsyncConnection` not inside a transaction, or a DSN (a
            connection is opened for the migration and closed after it).
        schema: The PostgreSQL schema to create the tables in; letters, digits and
            underscores.

    Raises:
        ValueError: ``schema`` is not a valid identifier.
        TypeError: ``target`` is not a pool, a connection or a DSN string.

    """
    statements = migration_statements(schema)
    if isinstance(target, AsyncConnectionPool):
        async with target.connection() as conn:
            await _migrate(conn, schema, statements)
    elif isinstance(target, AsyncConnection):
        await _migrate(target, schema, statements)
    elif isinstance(target, str):
        async with await AsyncConnection.connect(target) as conn:
            await _migrate(conn, schema, statements)
    else:
        raise TypeError(
            "migrate() needs a psycopg_pool.AsyncConnectionPool, a psycopg.AsyncConnection "
            "or a DSN string, "
            f"got {type(target).__name__}"
        )


async def _migrate(conn: AsyncConnection[Any], schema: str, statements: list[sql.Composed]) -> None:
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{schema}.migrate",)
        )
        for statement in statements:
            await conn.execute(statement)


class Statements:
    """SQL templates of one adapter, rendered for its schema on first use and cached.

    Rendering needs a connection (for quoting rules), so it is deferred to the first query
    rather than done in a constructor.
    """

    def __init__(self, schema: str, templates: dict[str, str]) -> None:
        self._params = {
            "s": schema_identifier(schema),
            "lock_prefix": sql.Literal(f"{schema}.events:"),
            "channel": sql.Literal(notify_channel(schema)),
            "listening": sql.Literal(listening_key(schema)),
        }
        self._templates = templates
        self._rendered: dict[str, bytes] = {}

    def get(self, name: str, conn: AsyncConnection[Any]) -> bytes:
        """The statement ``name``, rendered as bytes ready for ``execute``."""
        try:
            return self._rendered[name]
        except KeyError:
            pass
        composed = sql.SQL(self._templates[name]).format(**self._params)
        rendered = self._rendered[name] = composed.as_bytes(conn)
        return rendered

    def compose(self, template: str, **parts: sql.Composable) -> sql.Composed:
        """Compose an ad-hoc template with the schema's parameters and ``parts`` (not cached)."""
        return sql.SQL(template).format(**self._params, **parts)
