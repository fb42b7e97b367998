"""PostgresStreamer: an event log in PostgreSQL, woken by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, timedelta
from typing import Any, Protocol

import orjson
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from luno_wf import Ack, Clock, Event, Header, Record, SystemClock

from ._pool import AutocommitConnections, Closing, PoolOrDsn, raise_if_cancelling, stop_task
from ._schema import (
    DEFAULT_SCHEMA,
    Statements,
    listening_key,
    notify_channel,
    schema_identifier,
)

__all__ = ["PostgresReceiver", "PostgresSender", "PostgresStreamer"]

_log = logging.getLogger("luno_wf_postgres")

# How long new_receiver waits for the streamer's LISTEN connection (once per streamer).
_LISTEN_WAIT_SECONDS = 2.0
# How long a notifier that saw no other listening session sends nothing.
_ALONE_SECONDS = 1.0

_TEMPLATES = {
    "send": """
SELECT {s}.send_events(%b::text, %b::text[], %b::bigint[], %b::jsonb[], %b::timestamptz)""",
    # A name's shard is the one its newest receiver takes.
    "register": """
INSERT INTO {s}.cursors AS k (topic, name, position, shard, shards)
SELECT %(topic)s, %(name)s, CASE WHEN %(latest)s
    THEN coalesce((SELECT max(e.id) FROM {s}.events e WHERE e.topic = %(topic)s), 0)
    ELSE 0 END, %(shard)s, %(shards)s
ON CONFLICT (topic, name) DO UPDATE SET shard = excluded.shard, shards = excluded.shards
WHERE (k.shard, k.shards) IS DISTINCT FROM (excluded.shard, excluded.shards)""",
    # Headers as JSON text, decoded by orjson: cheaper than psycopg's jsonb loader.
    "claim": """
SELECT id, foreign_id, type, headers::text, created_at FROM {s}.claim_events(
    %b::text, %b::text, %b::text, %b::integer, %b::interval, %b::bigint[], %b::bigint[])""",
    "claim_with_records": """
SELECT id, foreign_id, type, headers::text, created_at, r_run_id, r_workflow_name,
       r_foreign_id, r_run_state, r_status, r_object, r_created_at, r_updated_at, r_version,
       r_meta
FROM {s}.claim_events_with_records(
    %b::text, %b::text, %b::text, %b::integer, %b::interval, %b::bigint[], %b::bigint[])""",
    "release": """
WITH acked AS (
    DELETE FROM {s}.claims
    WHERE topic = %(topic)s AND name = %(name)s AND event_id = ANY (%(acked)s::bigint[])
), released AS (
    UPDATE {s}.claims SET lease_until = '-infinity'
    WHERE topic = %(topic)s AND name = %(name)s AND owner = %(owner)s
      AND event_id = ANY (%(held)s::bigint[])
    RETURNING 1
)
SELECT pg_notify({channel}, %(topic)s) WHERE EXISTS (SELECT 1 FROM released)""",
    "purge": """
WITH bound AS (
    SELECT LEAST(
        (SELECT min(k.position) FROM {s}.cursors k WHERE k.topic = %(topic)s),
        (SELECT min(c.event_id) - 1 FROM {s}.claims c WHERE c.topic = %(topic)s)
    ) AS upto
), gone AS (
    DELETE FROM {s}.events e USING bound
    WHERE e.topic = %(topic)s
      AND (e.id <= bound.upto OR e.stored_at < now() - %(retention)s::interval)
    RETURNING e.id
), orphans AS (
    DELETE FROM {s}.claims c USING gone WHERE c.topic = %(topic)s AND c.event_id = gone.id
)
SELECT count(*) FROM gone""",
    "topics": "SELECT DISTINCT topic FROM {s}.cursors",  # topics with receivers
    # Retention over every topic, also those no receiver reads (a status reached only by a
    # callback, say): the oldest events by id, a bounded batch per sweep (an index walk).
    "expire": """
WITH oldest AS (
    SELECT id FROM {s}.events ORDER BY id LIMIT %(limit)s
), gone AS (
    DELETE FROM {s}.events e USING oldest o
    WHERE e.id = o.id AND e.stored_at < now() - %(retention)s::interval
    RETURNING e.id, e.topic
), orphans AS (
    DELETE FROM {s}.claims c USING gone g WHERE c.topic = g.topic AND c.event_id = g.id
)
SELECT count(*) FROM gone""",
    # Wake other processes' receivers of the topics, if any session but this streamer's
    # own listens (each holds the shared "listening" lock); returns whether one does.
    # Losing this to a crash only delays them until their next poll, so the commit need
    # not wait for the WAL flush.
    "notify": """
SELECT o.yes, (SELECT count(*) FROM (
        SELECT set_config('synchronous_commit', 'off', true), pg_notify({channel}, t.topic)
        FROM unnest(%(topics)b::text[]) AS t(topic) WHERE o.yes) AS n)
FROM (SELECT EXISTS (
    SELECT FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND l.pid <> %(own)s
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = ((hashtextextended({listening}, 0) >> 32) & 4294967295)::oid
      AND l.objid = (hashtextextended({listening}, 0) & 4294967295)::oid
) AS yes) AS o""",
}


_EXPIRE_BATCH = 10_000


def _event_id(event: Event) -> int:
    return event.id


def _json(headers: Mapping[str, str]) -> str:
    return orjson.dumps(headers if type(headers) is dict else dict(headers)).decode()


def _positive(value: timedelta, name: str) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValueError(f"{name} must be a positive timedelta, got {value!r}")
    return value


def _headers(value: Any) -> dict[str, str]:
    """An event's stored headers as strings; a malformed value is marked, not raised.

    Headers that are not a JSON object of strings (a row written by hand or by another
    service) would fail every claim of the batch they are in: instead the event carries
    :attr:`~luno_wf.Header.MALFORMED` with the stored text, and consumers set it aside.
    """
    if isinstance(value, dict):
        if all(type(v) is str for v in value.values()):
            return value
        if all(isinstance(v, str | int | float) for v in value.values()):
            return {k: str(v) for k, v in value.items()}  # numbers written by hand
    return {Header.MALFORMED: orjson.dumps(value).decode()}


class RecordSink(Protocol):
    """A record store that takes the records of the events receivers claim."""

    def _wants_records(self, topic: str) -> bool:
        """Whether the consumers of ``topic`` look up the records of its events together."""
        ...

    def _take_claimed(self, topic: str, rows: Mapping[str, tuple[Any, ...] | Record]) -> None:
        """The records (by run id) of the events a receiver of ``topic`` claimed or was handed."""
        ...


class _Notifier:
    """Announces events a record store appended to the receivers of other processes.

    A record store that writes events itself (``PostgresRecordStore.publishes_events``)
    does not NOTIFY in its statement: PostgreSQL serialises the commits of all notifying
    transactions (a cluster-wide lock held through the commit's WAL flush), which would
    serialise every write. It hands the topics here after its commit instead; they are
    announced by one statement at a time, each carrying every topic written meanwhile, in
    a transaction that does not wait for the WAL flush (a notification lost to a crash
    only delays receivers until their next poll: the events themselves are committed).

    Every streamer's LISTEN session holds a shared advisory lock while it listens, so the
    same statement learns whether any session but this streamer's own listens at all. If
    none does, nothing is sent for a second (this process's receivers were woken
    directly): a process alone costs no statement per write. A process that starts
    listening meanwhile claims what was written before it listened, and what is written
    in that second reaches it within its polling interval.
    """

    def __init__(self, conns: AutocommitConnections, sql_: Statements, listener: _Listener) -> None:
        self._conns = conns
        self._sql = sql_
        self._listener = listener
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._alone_until = 0.0  # no other listener was seen: skip announcing until then
        self.closed = False

    def announce(self, topics: Iterable[str]) -> None:
        """Notify ``topics`` soon (from a task of this streamer's)."""
        if self.closed or time.monotonic() < self._alone_until:
            return  # nobody else listens: nothing to announce for now
        self._pending.update(topics)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="luno_wf_postgres:notify"
            )

    async def close(self) -> None:
        self.closed = True
        task, self._task = self._task, None
        await stop_task(task)

    async def _run(self) -> None:
        while True:
            raise_if_cancelling()  # a cancellation psycopg_pool swallowed (Python 3.11)
            await self._wake.wait()
            self._wake.clear()
            topics, self._pending = self._pending, set()
            if time.monotonic() < self._alone_until:
                continue
            params = {"topics": list(topics), "own": self._listener.pid or 0}
            try:
                async with self._conns.connection() as conn:
                    cur = await self._conns.execute(conn, self._sql.get("notify", conn), params)
                    row = await cur.fetchone()
                    self._listener.local_pids.add(conn.info.backend_pid)
            except psycopg.Error as err:
                _log.warning("could not announce new events (receivers poll for them): %s", err)
                continue
            if row is not None and not row[0]:
                self._alone_until = time.monotonic() + _ALONE_SECONDS


class _Listener:
    """One LISTEN connection per streamer, waking the receivers of a topic on NOTIFY.

    Receivers take :meth:`waiter` *before* they look for events and wait on it after
    finding none, so a notification can never fall between the two. After every
    (re)connection all waiters are woken, as notifications may have been missed.
    """

    def __init__(self, conns: AutocommitConnections, channel: str, schema: str) -> None:
        self._conns = conns
        self._channel = channel
        self._listening = listening_key(schema)
        self._waiters: dict[str, asyncio.Event] = {}
        # How many times each topic's receivers were woken, and all of them (see wakes).
        self._wakes: dict[str, int] = {}
        self._wake_alls = 0
        self._task: asyncio.Task[None] | None = None
        # Backends this process sends from: it wakes its own receivers directly, so their
        # notifications would only cause a second, empty claim.
        self.local_pids: set[int] = set()
        # The server session of the LISTEN connection while it is up: it lives as long as
        # this process (and its streamer), so receivers name it in their claims.
        self.pid: int | None = None
        self._connected = asyncio.Event()

    async def wait_connected(self, timeout: float) -> int | None:
        """The LISTEN session's pid, waiting up to ``timeout`` seconds for it to be up."""
        if self.pid is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._connected.wait()
        return self.pid

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"listen:{self._channel}")

    def waiter(self, topic: str) -> asyncio.Event:
        event = self._waiters.get(topic)
        if event is None:
            event = self._waiters[topic] = asyncio.Event()
        return event

    def wakes(self, topic: str) -> int:
        """How many times receivers of ``topic`` were woken so far (a running count)."""
        return self._wakes.get(topic, 0) + self._wake_alls

    def wake(self, topic: str) -> None:
        self._wakes[topic] = self._wakes.get(topic, 0) + 1
        event = self._waiters.pop(topic, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        self._wake_alls += 1
        waiters, self._waiters = self._waiters, {}
        for event in waiters.values():
            event.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        self.wake_all()

    async def _run(self) -> None:
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self._channel))
        # Saying so to other streamers' notifiers (see _Notifier).
        say = sql.SQL("SELECT pg_advisory_lock_shared(hashtextextended({}, 0))").format(
            sql.Literal(self._listening)
        )
        backoff = 0.1
        while True:
            try:
                pool = await self._conns.pool()
                conn = await pool.getconn()
            except psycopg.Error as err:
                _log.warning("event listener cannot get a connection: %s", err)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                if not conn.autocommit:
                    await conn.set_autocommit(True)
                await conn.execute(say)
                await conn.execute(listen)  # the last query: pg_stat_activity shows it
                backoff = 0.1
                self.pid = conn.info.backend_pid
                self._connected.set()
                self.wake_all()
                async for notify in conn.notifies():
                    if notify.pid not in self.local_pids:
                        self.wake(notify.payload)
            except psycopg.Error as err:
                _log.warning("event listener connection failed, reconnecting: %s", err)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.pid = None
                self._connected.clear()
                await self._give_back(pool, conn)

    async def _give_back(
        self, pool: AsyncConnectionPool[Any], conn: psycopg.AsyncConnection[Any]
    ) -> None:
        try:
            if (
                not conn.closed
                and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            ):
                await conn.execute("UNLISTEN *")
                await conn.execute(
                    "SELECT pg_advisory_unlock_shared(hashtextextended(%s, 0))",
                    (self._listening,),
                )
                await conn.set_autocommit(False)
        except psycopg.Error:
            await conn.close()  # a broken connection is discarded by the pool
        await pool.putconn(conn)


class PostgresStreamer(Closing):
    """An :class:`~luno_wf.adapter.EventStreamer` on PostgreSQL tables.

    Events go to one table; each (topic, receiver name) has a durable cursor, and events
    handed out but not yet acked are *claimed* by their receiver with a lease. Receivers of
    one name share the work without duplicates; events a receiver had not acked go back to
    the name when it closes, or when its lease lapses (the process died). Senders NOTIFY,
    so waiting receivers wake at once; ``poll_frequency`` is only a fallback.

    Receivers claim events in batches (``batch_size``) and hand them out one by one; acks
    are recorded with the next claim (or on close), so an event acked just before a crash
    may be delivered again, but an event never acked is never lost.

    Events every receiver name of a topic has acked are deleted from time to time
    (``cleanup_interval``), and so is any event older than ``retention``, of every topic
    (also those no receiver reads).

    Args:
        pool: An open :class:`psycopg_pool.AsyncConnectionPool` (yours: the streamer never
            closes it), or a DSN from which the streamer opens its own pool at its first
            call and closes it in :meth:`close`. The streamer keeps one of its connections
            for LISTEN while any receiver exists; size the pool for it.
        schema: The schema :func:`~luno_wf_postgres.migrate` created.
        clock: Stamps events' ``created_at`` (defaults to the wall clock).
        batch_size: How many events a receiver claims per round trip.
        claim_lease: How long claimed events stay with a receiver that stops renewing
            them (renewed while it runs) before they are redelivered.
        poll_frequency: Default fallback polling interval of receivers.
        retention: Delete events older than this even if some receiver name has not acked
            them (None: keep them until every name has).
        cleanup_interval: How often receivers delete fully-acked events of their topic.
        pool_kwargs: With a DSN, keyword arguments for the streamer's own
            :class:`~psycopg_pool.AsyncConnectionPool` (default ``min_size=1, max_size=10``).

    """

    def __init__(
        self,
        pool: PoolOrDsn,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        batch_size: int = 100,
        claim_lease: timedelta = timedelta(seconds=30),
        poll_frequency: timedelta = timedelta(seconds=1),
        retention: timedelta | None = timedelta(days=7),
        cleanup_interval: timedelta = timedelta(seconds=30),
        pool_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        schema_identifier(schema)  # validates
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._conns = AutocommitConnections(
            pool, owner="PostgresStreamer", pool_kwargs=pool_kwargs, schema=schema
        )
        self._clock = clock or SystemClock()
        self._sql = Statements(schema, _TEMPLATES)
        self._batch_size = batch_size
        self._lease = _positive(claim_lease, "claim_lease")
        self._poll = _positive(poll_frequency, "poll_frequency")
        self._retention = None if retention is None else _positive(retention, "retention")
        self._cleanup_every = _positive(cleanup_interval, "cleanup_interval").total_seconds()
        self._last_cleanup: dict[str, float] = {}
        self._listener = _Listener(self._conns, notify_channel(schema), schema)
        self._notifier = _Notifier(self._conns, self._sql, self._listener)
        # Record stores writing to this log, given the records of the events claimed.
        self._record_sinks: list[RecordSink] = []
        # This process's open receivers, by topic: those a write may hand its event to.
        self._receivers: dict[str, list[PostgresReceiver]] = {}
        self._releasing: set[asyncio.Task[None]] = set()  # see _release_later
        self._schema = schema
        self._closed = False

    async def new_sender(self, topic: str) -> PostgresSender:
        """A sender for ``topic``."""
        self._check_open()
        return PostgresSender(self, topic)

    async def new_receiver(
        self,
        topic: str,
        name: str,
        *,
        stream_from_latest: bool = False,
        poll_frequency: timedelta | None = None,
    ) -> PostgresReceiver:
        """A receiver of ``topic`` resuming at ``name``'s position.

        With ``stream_from_latest`` and no position yet for ``name``, it starts after the
        newest event of the topic at this call. ``poll_frequency`` overrides the streamer's
        fallback polling interval.
        """
        return await self._new_receiver(topic, name, stream_from_latest, poll_frequency, 1, 1)

    async def new_shard_receiver(
        self,
        topic: str,
        name: str,
        *,
        shard: int,
        total: int,
        stream_from_latest: bool = False,
        poll_frequency: timedelta | None = None,
    ) -> PostgresReceiver:
        """A receiver of the events of ``topic`` in shard ``shard`` (1-based) of ``total``.

        Those whose id modulo ``total`` is ``shard - 1``
        (a :class:`~luno_wf.adapter.ShardedStreamer`): claims take no other event, and the
        name's cursor moves past the other shards' events. Otherwise as :meth:`new_receiver`.

        Raises:
            ValueError: ``total`` is below 1, or ``shard`` is not in 1..``total``.

        """
        if not (isinstance(total, int) and isinstance(shard, int) and 1 <= shard <= total):
            raise ValueError(f"shard must be in 1..total, got shard {shard!r} of {total!r}")
        return await self._new_receiver(
            topic, name, stream_from_latest, poll_frequency, shard, total
        )

    async def _new_receiver(
        self,
        topic: str,
        name: str,
        stream_from_latest: bool,
        poll_frequency: timedelta | None,
        shard: int,
        shards: int,
    ) -> PostgresReceiver:
        self._check_open()
        if not name:
            raise ValueError("receiver name must be a non-empty string")
        poll = self._poll if poll_frequency is None else _positive(poll_frequency, "poll")
        register = {
            "topic": topic,
            "name": name,
            "latest": stream_from_latest,
            "shard": shard,
            "shards": shards,
        }
        async with self._conns.connection() as conn:
            await conn.execute(self._sql.get("register", conn), register)
        self._listener.start()
        # Claims name the LISTEN session, so that when this process dies another receiver
        # of the name takes its events at once rather than when their lease lapses.
        pid = await self._listener.wait_connected(_LISTEN_WAIT_SECONDS)
        receiver = PostgresReceiver(self, topic, name, poll, pid, (shard, shards))
        self._receivers.setdefault(topic, []).append(receiver)
        return receiver

    async def purge(self, topic: str | None = None) -> int:
        """Delete events every receiver name has acked (and any past ``retention``) now.

        Args:
            topic: One topic, or every topic that has receivers (and then also the events
                past ``retention`` of topics nobody reads).

        Returns:
            How many events were deleted.

        """
        deleted = await self._purge_topics(topic)
        if topic is None:
            deleted += await self.expire()
        return deleted

    async def expire(self) -> int:
        """Delete events past ``retention`` of every topic, read or not; how many went.

        Receivers call it every ``cleanup_interval``; each call looks at the oldest
        ``_EXPIRE_BATCH`` events, so it stays cheap however large the table is.
        """
        if self._retention is None:
            return 0
        async with self._conns.connection() as conn:
            cur = await conn.execute(
                self._sql.get("expire", conn),
                {"retention": self._retention, "limit": _EXPIRE_BATCH},
            )
            row = await cur.fetchone()
        return row[0] if row else 0

    async def _purge_topics(self, topic: str | None) -> int:
        async with self._conns.connection() as conn:
            if topic is None:
                cur = await conn.execute(self._sql.get("topics", conn))
                topics = [row[0] for row in await cur.fetchall()]
            else:
                topics = [topic]
            deleted = 0
            for t in topics:
                cur = await conn.execute(
                    self._sql.get("purge", conn), {"topic": t, "retention": self._retention}
                )
                row = await cur.fetchone()
                deleted += row[0] if row else 0
                self._last_cleanup[t] = time.monotonic()
        return deleted

    async def close(self) -> None:
        """Stop listening, give connections back (closing a pool opened from a DSN); safe twice.

        Close receivers first: a receiver of a closed streamer can no longer reach the
        database, so its calls fail (its un-acked events return when their lease lapses).
        """
        self._closed = True
        for task in list(self._releasing):
            with contextlib.suppress(Exception):
                await task
        await self._notifier.close()
        await self._listener.close()
        await self._conns.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the PostgresStreamer is closed")

    def _appendable_by(self, conns: AutocommitConnections, schema: str) -> bool:
        """Whether a record store on ``conns`` and ``schema`` can append to this log."""
        return schema == self._schema and self._conns.same_database(conns)

    def _add_record_sink(self, sink: RecordSink) -> None:
        """From now on, hand ``sink`` the records of the events receivers claim."""
        if sink not in self._record_sinks:
            self._record_sinks.append(sink)

    def _handoff_targets(self, topic: str) -> list[PostgresReceiver]:
        """The receivers of ``topic`` in this process a write may hand its event to.

        Those that have handed out everything they hold, so that the event is started on
        at once, one per name; a receiver still busy with earlier events leaves it to be
        claimed (by itself later, or by a receiver of its name in another process).
        """
        receivers = self._receivers.get(topic)
        if not receivers:
            return []
        targets: dict[str, PostgresReceiver] = {}
        for receiver in receivers:
            if not receiver._buffer and not receiver._closed:
                targets.setdefault(receiver._name, receiver)
        return list(targets.values())

    def _hand(self, receiver: PostgresReceiver, event: Event, record: Record) -> None:
        """A write handed ``event`` (of ``record``) to ``receiver``, claimed in its statement."""
        receiver._take_handed(event)
        for sink in receiver._sinks:
            sink._take_claimed(receiver._topic, {record.run_id: record})

    def _release_later(self, topic: str, name: str, owner: str, event_id: int) -> None:
        """Give back an event handed to a receiver that closed meanwhile (soon, in a task).

        If the streamer is closed first, or the database cannot be reached, the event
        goes back when its lease lapses, as any claimed event of a closed receiver.
        """
        if self._closed:
            return
        params: dict[str, object] = {
            "topic": topic,
            "name": name,
            "owner": owner,
            "acked": [],
            "held": [event_id],
        }
        task = asyncio.get_running_loop().create_task(
            self._release(params), name="luno_wf_postgres:release"
        )
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, params: dict[str, object]) -> None:
        try:
            async with self._conns.connection() as conn:
                await conn.execute(self._sql.get("release", conn), params)
        except psycopg.Error as err:
            _log.warning("could not give back a handed event (its lease will lapse): %s", err)

    def _passed_by(self, topic: str, event_id: int) -> None:
        """A write of this process appended ``event_id`` to ``topic`` (before its wake).

        Receivers of other shards need not claim for it.
        """
        for receiver in self._receivers.get(topic, ()):
            if event_id % receiver._shards != receiver._shard - 1:
                receiver._passed += 1

    def _forget(self, receiver: PostgresReceiver) -> None:
        """``receiver`` closed: no write hands it anything more."""
        receivers = self._receivers.get(receiver._topic, [])
        if receiver in receivers:
            receivers.remove(receiver)
        if not receivers:
            self._receivers.pop(receiver._topic, None)

    def _appended(self, topics: Collection[str]) -> None:
        """A record store's write (committed) appended events of ``topics``.

        Receivers in this process are woken now; those of other processes are notified
        soon after (:class:`_Notifier`).
        """
        listener = self._listener
        for topic in topics:
            listener.wake(topic)
        self._notifier.announce(topics)

    async def _maybe_cleanup(self, topic: str) -> None:
        now = time.monotonic()
        last = self._last_cleanup.setdefault(topic, now)
        if now - last >= self._cleanup_every:
            self._last_cleanup[topic] = now
            await self.purge(topic)
        last = self._last_cleanup.setdefault("", now)  # "" never names a topic
        if now - last >= self._cleanup_every:
            self._last_cleanup[""] = now
            await self.expire()


class PostgresSender:
    """Sends to one topic of a :class:`PostgresStreamer`."""

    def __init__(self, streamer: PostgresStreamer, topic: str) -> None:
        self._streamer = streamer
        self._topic = topic
        self._closed = False

    async def send(self, foreign_id: str, status_type: int, headers: Mapping[str, str]) -> None:
        """Append one event; durable when this returns."""
        await self.send_many([(foreign_id, status_type, headers)])

    async def send_many(self, events: Sequence[tuple[str, int, Mapping[str, str]]]) -> None:
        """Append events in order, in one statement; durable when this returns."""
        if self._closed:
            raise RuntimeError(f"sender for topic {self._topic!r} is closed")
        if not events:
            return
        streamer = self._streamer
        params = (
            self._topic,
            [foreign_id for foreign_id, _, _ in events],
            [int(status_type) for _, status_type, _ in events],
            # JSON text (cast to jsonb by the statement): cheaper to dump than Jsonb.
            [_json(headers) for _, _, headers in events],
            streamer._clock.now(),
        )
        async with streamer._conns.connection() as conn:
            await streamer._conns.execute(conn, streamer._sql.get("send", conn), params)
            pid = conn.info.backend_pid
        listener = streamer._listener
        listener.local_pids.add(pid)
        listener.wake(self._topic)  # receivers in this process need no NOTIFY

    async def close(self) -> None:
        """Close the sender; safe twice."""
        self._closed = True


class PostgresReceiver:
    """Receives one topic of a :class:`PostgresStreamer` under one name."""

    def __init__(
        self,
        streamer: PostgresStreamer,
        topic: str,
        name: str,
        poll: timedelta,
        pid: int | None = None,
        shard: tuple[int, int] = (1, 1),
    ) -> None:
        self._streamer = streamer
        self._topic = topic
        self._name = name
        self._shard, self._shards = shard  # the events whose id % shards == shard - 1
        self._owner = uuid.uuid4().hex if pid is None else f"{uuid.uuid4().hex}@{pid}"
        # Waiting is bounded by the lease too, so held claims are renewed while idle.
        self._wait = min(poll, streamer._lease / 3).total_seconds()
        self._renew_every = streamer._lease.total_seconds() / 3
        self._buffer: deque[Event] = deque()
        # Record stores that take the records of this topic's events with each claim.
        self._sinks = [sink for sink in streamer._record_sinks if sink._wants_records(topic)]
        self._held: set[int] = set()  # claimed and not acked: buffered or handed out
        self._acked: list[int] = []  # acked, not yet recorded in the database
        self._renewed = 0.0
        # Set when the last claim drained the topic: the waiter taken before that claim.
        # The next claim waits for it (it is set if anything was sent since), so an event
        # costs one claim, which also records the previous event's ack.
        self._drained: asyncio.Event | None = None
        # Events writes of this process handed over (see PostgresStreamer._hand), events
        # they wrote of other shards (see _passed_by), and both counts with the topic's
        # wakes when the waiter in _drained was taken.
        self._handed = 0
        self._passed = 0
        self._since = (0, 0)
        self._closed = False

    async def recv(self) -> tuple[Event, Ack]:
        """Wait for the next event (cancellable) and return it with its ack.

        Raises:
            RuntimeError: The receiver is closed.

        """
        self._check_open()
        streamer = self._streamer
        while True:
            if self._buffer:
                if time.monotonic() - self._renewed >= self._renew_every:
                    await self._claim(0)  # records acks, renews what it holds
                    self._check_open()
                    await streamer._maybe_cleanup(self._topic)
                if self._buffer:
                    return self._hand_out(self._buffer.popleft())
            if self._drained is not None:
                waiter, self._drained = self._drained, None
                raise_if_cancelling()
                # At most the polling interval after its last claim: then it claims,
                # whatever woke it meanwhile.
                remaining = self._renewed + self._wait - time.monotonic()
                woken = False
                if remaining > 0:
                    try:
                        async with asyncio.timeout(remaining):
                            await waiter.wait()
                        woken = True
                    except TimeoutError:
                        pass
                self._check_open()
                if woken and self._only_handed():
                    # Nothing but this process's writes woke it, each handing its event
                    # over or writing another shard's: nothing to claim. Hand out what it
                    # was handed, or wait again.
                    self._drained = self._watch()
                    continue
            waiter = self._watch()
            claimed = await self._claim(streamer._batch_size)
            self._check_open()
            if claimed < streamer._batch_size:
                self._drained = waiter
            if not claimed:
                await streamer._maybe_cleanup(self._topic)

    async def recv_many(self, limit: int) -> list[tuple[Event, Ack]]:
        """Wait for the next event (cancellable), then take up to ``limit`` in all.

        The events after the first are those this receiver already holds, in order.

        Raises:
            RuntimeError: The receiver is closed.

        """
        batch = [await self.recv()]
        while self._buffer and len(batch) < limit:
            batch.append(self._hand_out(self._buffer.popleft()))
        return batch

    def _watch(self) -> asyncio.Event:
        """The topic's waiter, taken now: it is set by any wake from now on."""
        self._since = (self._streamer._listener.wakes(self._topic), self._handed + self._passed)
        return self._streamer._listener.waiter(self._topic)

    def _only_handed(self) -> bool:
        """Whether every wake of the topic since :meth:`_watch` brought nothing to claim.

        That is, came from a write of this process whose event it was handed, or whose
        event is of another shard.
        """
        wakes, known = self._since
        now_known = self._handed + self._passed
        return self._streamer._listener.wakes(self._topic) - wakes == now_known - known

    def _take_handed(self, event: Event) -> None:
        """``event``, claimed for this receiver by a write of this process (see hand_off)."""
        if self._closed:  # closed while the write was in flight: give it back
            self._streamer._release_later(self._topic, self._name, self._owner, event.id)
            return
        self._held.add(event.id)
        buffer = self._buffer
        if buffer and buffer[-1].id > event.id:
            bisect.insort(buffer, event, key=_event_id)  # id order, as claims hand out
        else:
            buffer.append(event)
        self._handed += 1

    def _hand_out(self, event: Event) -> tuple[Event, Ack]:
        event_id = event.id

        async def ack() -> None:
            if not self._closed and event_id in self._held:
                self._held.discard(event_id)
                self._acked.append(event_id)

        return event, ack

    async def _claim(self, limit: int) -> int:
        streamer = self._streamer
        acked, self._acked = self._acked, []
        params = (
            self._topic,
            self._name,
            self._owner,
            limit,
            streamer._lease,
            acked,
            list(self._held),
        )
        sinks = self._sinks
        statement = "claim_with_records" if sinks else "claim"
        try:
            async with streamer._conns.connection() as conn:
                cur = await streamer._conns.execute(
                    conn, streamer._sql.get(statement, conn), params
                )
                rows = await cur.fetchall()
        except BaseException:
            # Not recorded (or not known to be): record them with the next claim.
            self._acked[:0] = acked
            raise
        self._renewed = time.monotonic()
        if sinks and rows:
            records = {row[5]: row[5:] for row in rows if row[5] is not None}
            for sink in sinks:
                sink._take_claimed(self._topic, records)
        buffer = self._buffer
        after = buffer[-1].id if buffer else 0  # a handed event may be newer than these
        for id, foreign_id, type_, headers, created_at, *_ in rows:
            if id in self._held:
                continue  # our own lapsed claim, still buffered
            self._held.add(id)
            buffer.append(
                Event(
                    id=int(id),
                    foreign_id=foreign_id,
                    type=int(type_),
                    headers=_headers(orjson.loads(headers)),
                    created_at=created_at.astimezone(UTC),
                )
            )
        if rows and after > rows[0][0]:
            self._buffer = deque(sorted(buffer, key=_event_id))
        return len(rows)

    async def close(self) -> None:
        """Record acks and give un-acked events back to the name at once; safe twice.

        If the database cannot be reached the events still go back, when their lease lapses.
        """
        if self._closed:
            return
        self._closed = True
        streamer = self._streamer
        streamer._forget(self)
        params = {
            "topic": self._topic,
            "name": self._name,
            "owner": self._owner,
            "acked": self._acked,
            "held": list(self._held),
        }
        self._buffer.clear()
        self._held.clear()
        self._acked = []
        streamer._listener.wake(self._topic)  # a recv() waiting in another task sees the close
        if not params["acked"] and not params["held"]:
            return
        if streamer._closed:
            _log.warning(
                "receiver %r of topic %r closed after its streamer: its events are "
                "redelivered when their lease lapses",
                self._name,
                self._topic,
            )
            return
        try:
            async with streamer._conns.connection() as conn:
                await conn.execute(streamer._sql.get("release", conn), params)
        except psycopg.Error as err:
            _log.warning(
                "receiver %r of topic %r could not release its events (they are redelivered "
                "when their lease lapses): %s",
                self._name,
                self._topic,
                err,
            )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"receiver {self._name!r} of topic {self._topic!r} is closed")
