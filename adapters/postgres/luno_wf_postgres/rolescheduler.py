"""PostgresRoleScheduler: a fleet's roles spread over its live members, held under leases.

Each scheduler (in each event loop) is one *member* of the fleet of its namespace. One
connection per member does all of its work: a heartbeat every ``heartbeat_interval`` that
renews its membership and the leases of the roles it holds, publishes the roles its
callers ask for and reads the fleet (one statement); taking and giving back leases; and
LISTEN for the other members' announcements. Owners come from
:func:`luno_wf.adapter.spread_roles`, computed by every member from the same tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.errors import UndefinedFunction, UndefinedTable

from luno_wf.adapter import spread_roles
from luno_wf.errors import RoleLost

from ._pool import Closing, raise_if_cancelling, stop_task
from ._schema import DEFAULT_SCHEMA, schema_identifier

__all__ = ["PostgresRoleScheduler"]

_log = logging.getLogger("luno_wf_postgres")

# One heartbeat: upsert this member (with the roles it asks for), renew the leases it
# holds (only those not lapsed), give back the ones it no longer wants, and read the other
# live members and the leases of the roles it asks for. Data-modifying CTEs all run; the
# final SELECT sees the tables as they were before them.
_BEAT = """
WITH me AS (
    INSERT INTO {s}.members AS m
        (namespace, member_id, roles, heartbeat_at, expires_at, host, pid)
    VALUES (%(ns)s, %(me)s, %(roles)s, now(), now() + %(lease)s, %(host)s, %(pid)s)
    ON CONFLICT (namespace, member_id) DO UPDATE
        SET roles = EXCLUDED.roles, heartbeat_at = EXCLUDED.heartbeat_at,
            expires_at = EXCLUDED.expires_at
    RETURNING 1
), renewed AS (
    UPDATE {s}.role_leases AS l SET expires_at = now() + %(lease)s
    WHERE l.namespace = %(ns)s AND l.member_id = %(me)s AND l.role = ANY (%(held)s)
      AND l.expires_at > now()
    RETURNING l.role
), released AS (
    DELETE FROM {s}.role_leases AS l
    WHERE l.namespace = %(ns)s AND l.member_id = %(me)s AND l.role = ANY (%(release)s)
), pruned_members AS (
    DELETE FROM {s}.members AS m
    WHERE %(prune)s AND m.namespace = %(ns)s AND m.expires_at < now() - interval '1 hour'
), pruned_leases AS (
    DELETE FROM {s}.role_leases AS l
    WHERE %(prune)s AND l.namespace = %(ns)s AND l.expires_at < now() - interval '1 hour'
)
SELECT 'renewed', r.role, NULL::text[], NULL::text, NULL::boolean FROM renewed AS r
UNION ALL
SELECT 'member', m.member_id, m.roles, NULL, NULL FROM {s}.members AS m
WHERE m.namespace = %(ns)s AND m.expires_at > now() AND m.member_id <> %(me)s
UNION ALL
SELECT 'lease', l.role, NULL, l.member_id, l.expires_at > now() FROM {s}.role_leases AS l
WHERE l.namespace = %(ns)s AND l.role = ANY (%(roles)s)
"""

# Take the leases of roles this member owns: free, lapsed, or already its own.
_TAKE = """
INSERT INTO {s}.role_leases AS l (namespace, role, member_id, expires_at, acquired_at)
SELECT %(ns)s, r.role, %(me)s, now() + %(lease)s, now() FROM unnest(%(roles)s::text[]) AS r(role)
ON CONFLICT (namespace, role) DO UPDATE
    SET member_id = EXCLUDED.member_id, expires_at = EXCLUDED.expires_at,
        acquired_at = EXCLUDED.acquired_at
    WHERE l.expires_at <= now() OR l.member_id = EXCLUDED.member_id
RETURNING l.role
"""

# Give leases back and tell the other members (they may own them, or have been waiting).
_RELEASE = """
WITH released AS (
    DELETE FROM {s}.role_leases AS l
    WHERE l.namespace = %(ns)s AND l.member_id = %(me)s AND l.role = ANY (%(roles)s)
)
SELECT pg_notify(%(channel)s, %(me)s)
"""

_ANNOUNCE = "SELECT pg_notify(%(channel)s, %(me)s)"

# Leave the fleet: no member row, no lease.
_LEAVE = """
WITH leases AS (
    DELETE FROM {s}.role_leases AS l WHERE l.namespace = %(ns)s AND l.member_id = %(me)s
), member AS (
    DELETE FROM {s}.members AS m WHERE m.namespace = %(ns)s AND m.member_id = %(me)s
)
SELECT pg_notify(%(channel)s, %(me)s)
"""

# How often a member deletes the rows of members gone for over an hour.
_PRUNE_EVERY = 60.0


def _positive(value: timedelta, name: str) -> float:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValueError(f"{name} must be a positive timedelta, got {value!r}")
    return value.total_seconds()


class PostgresRoleScheduler(Closing):
    """A :class:`~luno_wf.adapter.RoleScheduler` for a fleet of processes on PostgreSQL.

    Every process using the scheduler (per event loop) is a *member* of the fleet of its
    ``namespace``. Roles are spread over the live members that ask for them by rendezvous
    hashing with bounded loads (:func:`luno_wf.adapter.spread_roles`), so counts stay
    within one of even, and each member holds the roles it owns under leases in the
    ``role_leases`` table. Lease times are the database's ``now()``, so the machines'
    clocks do not matter.

    - **Heartbeat**: every ``heartbeat_interval`` (1 s) a member renews its row in
      ``members`` and the leases it holds to ``now() + lease_duration`` (5 s), and reads
      the other live members. A member whose row has lapsed is not live.
    - **Taking a role**: the owner takes a free or lapsed lease at once. A member with
      callers waiting for roles it owns but cannot take yet looks again every
      ``poll_interval`` (250 ms), and at once when another member announces a change.
    - **Moving a role**: when a member joins (or starts asking for a role), it announces
      it (NOTIFY); a holder that no longer owns a role has its body cancelled with
      :class:`~luno_wf.errors.RoleLost`, gives the lease back and announces it, and the
      new owner takes it: about a round trip or two. A member that leaves (nothing asks
      for roles any more, or :meth:`close`) deletes its rows and announces it.
    - **Death or stall**: a member that stops beating (killed, SIGSTOP, blocked loop,
      network gone) is dropped from the fleet once its lease lapses, and its roles are
      taken by their new owners at their next heartbeat: within ``lease_duration +
      heartbeat_interval`` (6 s) plus a round trip.
    - **Losing a lease**: a holder counts a lease as valid until ``lease_duration`` after
      it *sent* the heartbeat that last renewed it, which is never later than the
      database's expiry. If no renewal has come back by then (the loop was stalled, the
      database unreachable), its body is cancelled with ``RoleLost`` before the lease can
      pass to another member; a renewal that fails (the lease lapsed) does the same. The
      record store's compare-and-set fences any write that slips through.

    Run :func:`~luno_wf_postgres.migrate` on ``schema`` first: the tables ``members`` and
    ``role_leases`` live there.

    Args:
        conninfo: A libpq connection string or URI for the member's connection.
        namespace: The fleet: members of one namespace share roles; letters, digits and
            underscores. Also names the NOTIFY channel ``<namespace>_roles``.
        schema: The schema holding the tables (default: ``namespace``, which is also
            :func:`~luno_wf_postgres.migrate`'s default schema).
        heartbeat_interval: How often a member renews its membership and leases.
        lease_duration: How long a membership or lease lasts without renewal; at least
            twice ``heartbeat_interval``.
        poll_interval: How often a member with callers waiting for a role it owns looks
            at its lease again between heartbeats.
        check_timeout: How long one round trip may take before the connection counts as
            broken (and is opened again).
        connect_kwargs: Extra keyword arguments for :meth:`psycopg.AsyncConnection.connect`.
        check_interval: The former name of ``heartbeat_interval`` (deprecated).

    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        namespace: str = DEFAULT_SCHEMA,
        schema: str | None = None,
        heartbeat_interval: timedelta = timedelta(seconds=1),
        lease_duration: timedelta = timedelta(seconds=5),
        poll_interval: timedelta = timedelta(milliseconds=250),
        check_timeout: timedelta = timedelta(seconds=5),
        connect_kwargs: Mapping[str, Any] | None = None,
        check_interval: timedelta | None = None,
    ) -> None:
        schema_identifier(namespace)  # validates
        if check_interval is not None:
            warnings.warn(
                "PostgresRoleScheduler(check_interval=...) is deprecated: use heartbeat_interval",
                DeprecationWarning,
                stacklevel=2,
            )
            heartbeat_interval = check_interval
        self._conninfo = conninfo
        self._namespace = namespace
        self._schema_name = namespace if schema is None else schema
        self._schema = schema_identifier(self._schema_name)
        self._channel = f"{namespace}_roles"
        self._heartbeat = _positive(heartbeat_interval, "heartbeat_interval")
        self._lease = _positive(lease_duration, "lease_duration")
        if self._lease < 2 * self._heartbeat:
            raise ValueError(
                f"lease_duration ({lease_duration}) must be at least twice "
                f"heartbeat_interval ({heartbeat_interval})"
            )
        self._poll = _positive(poll_interval, "poll_interval")
        self._check_timeout = _positive(check_timeout, "check_timeout")
        self._connect_kwargs = dict(connect_kwargs or {})
        self._closed = False
        self._member: _Member | None = None

    @property
    def namespace(self) -> str:
        """The fleet this scheduler is a member of."""
        return self._namespace

    @property
    def member_id(self) -> str | None:
        """This member's id in the ``members`` table (``host/pid/token``), once it runs."""
        return None if self._member is None else self._member.id

    def await_role(self, role: str) -> _Lease:
        """Hold ``role`` for the duration of an ``async with`` block.

        Raises:
            ValueError: ``role`` is empty.
            RuntimeError: The scheduler is closed.

        """
        if not role:
            raise ValueError("role must be a non-empty string")
        if self._closed:
            raise RuntimeError(f"the PostgresRoleScheduler is closed (awaiting role {role!r})")
        return _Lease(self, role)

    async def close(self) -> None:
        """Leave the fleet and refuse new :meth:`await_role` calls; safe twice.

        Roles still held are lost (their bodies are cancelled with ``RoleLost``) and given
        back at once, so stop the workflow before closing its scheduler.
        """
        self._closed = True
        member, self._member = self._member, None
        if member is not None:
            await member.stop()

    @contextlib.contextmanager
    def _frozen(self) -> Iterator[None]:
        """Tests: this member beats no more inside the block, as a stopped process would."""
        member = self._member_here()
        member.frozen = True
        try:
            yield
        finally:
            member.frozen = False
            member.poke.set()

    def _member_here(self) -> _Member:
        loop = asyncio.get_running_loop()
        member = self._member
        if member is None or member.loop is not loop or loop.is_closed():
            member = self._member = _Member(self, loop)
        return member

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        kwargs = {**self._connect_kwargs, "autocommit": True}
        return await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)


class _Role:
    """One role as this member sees it."""

    __slots__ = ("callers", "deadline", "holder", "leased", "left_at", "lock", "owned", "ready")

    def __init__(self) -> None:
        self.callers = 0  # local callers asking for it (waiting or inside)
        self.lock = asyncio.Lock()  # one local caller at a time waits for the lease
        self.ready = asyncio.Event()  # set while a local caller may enter
        self.leased = False  # this member holds the lease
        self.deadline = 0.0  # loop time until which the lease is surely valid
        self.owned = False  # this member owns it, as of the last heartbeat
        self.holder: _Lease | None = None  # the local caller inside the block
        self.left_at: float | None = None  # when its last caller left


class _Member:
    """This process in the fleet: one connection, one task, per scheduler and event loop."""

    def __init__(self, scheduler: PostgresRoleScheduler, loop: asyncio.AbstractEventLoop) -> None:
        self.scheduler = scheduler
        self.loop = loop
        self.host = socket.gethostname()
        self.id = f"{self.host}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.roles: dict[str, _Role] = {}
        self.release: set[str] = set()  # leases to give back
        self.published: frozenset[str] | None = None  # roles asked for, as last published
        self.poke = asyncio.Event()
        self.frozen = False  # tests: stands for a stopped process
        self.stopping = False
        self.failure: Exception | None = None  # told to waiting callers (schema missing)
        self.task: asyncio.Task[None] | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.backend_pid = 0
        self.pruned_at = -_PRUNE_EVERY
        self.params: dict[str, Any] = {
            "ns": scheduler._namespace,
            "me": self.id,
            "lease": timedelta(seconds=scheduler._lease),
            "channel": scheduler._channel,
            "host": self.host,
            "pid": os.getpid(),
        }
        self.sql: dict[str, bytes] = {}

    # -- callers -------------------------------------------------------------------------

    def want(self, name: str) -> _Role:
        """A caller asks for ``name``: count it and make sure the member runs."""
        role = self.roles.get(name)
        if role is None:
            role = self.roles[name] = _Role()
        role.callers += 1
        role.left_at = None
        self.failure = None
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._run(), name="luno_wf-role-member")
        self.poke.set()
        return role

    def unwant(self, name: str, role: _Role) -> None:
        """A caller stops asking for ``name`` (it left the block or stopped waiting)."""
        role.callers -= 1
        if role.callers == 0:
            role.left_at = self.loop.time()
        self.poke.set()

    def give_back(self, name: str, role: _Role) -> None:
        """The lease of ``name`` is not needed by the caller that had it."""
        role.ready.clear()
        if role.leased:
            self.release.add(name)
        self.poke.set()

    def idle(self) -> bool:
        return self.stopping or not any(r.callers or r.leased for r in self.roles.values())

    # -- the member's task -----------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await self.scheduler._connect()
                await conn.execute(
                    sql.SQL("LISTEN {}").format(sql.Identifier(self.scheduler._channel))
                )
                self.backend_pid = conn.info.backend_pid
                self.published = None
                backoff = 0.1
                while not self.idle():
                    await self._beat(conn)
                    await self._wait(conn)
                await self._execute(conn, "leave", _LEAVE)
            except asyncio.CancelledError:
                # Cancelled (asyncio.run ending, say): leave at once rather than keep the
                # roles until the lease lapses.
                self._lose_all("the scheduler stopped")
                await self._leave_quietly(conn)
                raise
            except (UndefinedTable, UndefinedFunction) as err:
                self._fail(err)
            except (psycopg.Error, OSError, TimeoutError) as err:
                _log.warning("role scheduler %s: %s; connecting again", self.id, err)
            except Exception:
                _log.exception("role scheduler %s failed; starting again", self.id)
            finally:
                if conn is not None:
                    await conn.close()
            if self.idle():
                self._lose_all("the scheduler stopped")
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.scheduler._heartbeat)

    async def _leave_quietly(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        if conn is None or conn.closed:
            return
        try:
            async with asyncio.timeout(1):
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    await self._execute(conn, "leave", _LEAVE)
        except (psycopg.Error, OSError, TimeoutError, asyncio.CancelledError):
            pass  # the leases lapse on their own

    def _fail(self, err: Exception) -> None:
        schema = self.scheduler._schema_name
        self.failure = type(err)(
            f"PostgresRoleScheduler: schema {schema!r} is missing its fleet tables "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); create them "
            f"with `await luno_wf_postgres.migrate(pool_or_dsn, schema={schema!r})`"
        )
        for role in self.roles.values():
            role.ready.set()  # waiting callers look, and raise the failure

    async def _execute(
        self, conn: psycopg.AsyncConnection[Any], name: str, template: str, **params: Any
    ) -> list[tuple[Any, ...]]:
        query = self.sql.get(name)
        if query is None:
            query = self.sql[name] = (
                sql.SQL(template).format(s=self.scheduler._schema).as_bytes(conn)
            )
        async with asyncio.timeout(self.scheduler._check_timeout):
            cur = await conn.execute(query, {**self.params, **params})
            return await cur.fetchall() if cur.description is not None else []

    async def _wait(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Until the next heartbeat, a poke, or another member's announcement."""
        timeout = self.scheduler._heartbeat
        if any(r.owned and not r.leased and r.callers for r in self.roles.values()):
            timeout = min(timeout, self.scheduler._poll)
        if self.poke.is_set():
            self.poke.clear()
            return
        heard = asyncio.ensure_future(self._heard(conn, timeout))
        poked = asyncio.ensure_future(self.poke.wait())
        try:
            await asyncio.wait({heard, poked}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await stop_task(poked)
            await stop_task(heard)
        self.poke.clear()
        if heard.done() and not heard.cancelled():
            err = heard.exception()
            if err is not None:
                raise err

    async def _heard(self, conn: psycopg.AsyncConnection[Any], timeout: float) -> None:
        async for notify in conn.notifies(timeout=timeout):
            if notify.pid != self.backend_pid:
                return

    async def _beat(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """One heartbeat, then take, give back and announce what changed."""
        if self.frozen:
            return
        now = self.loop.time()
        linger = self.scheduler._heartbeat
        asked = frozenset(
            name
            for name, role in self.roles.items()
            if role.callers or (role.left_at is not None and now - role.left_at < linger)
        )
        for name, role in self.roles.items():
            # A lease given back by one caller while another one waits: keep it.
            if name in self.release and role.leased and role.owned and role.callers:
                self.release.discard(name)
                role.ready.set()
        held = [n for n, r in self.roles.items() if r.leased and n not in self.release]
        release = sorted(self.release)
        prune = now - self.pruned_at >= _PRUNE_EVERY
        rows = await self._execute(
            conn,
            "beat",
            _BEAT,
            roles=sorted(asked),
            held=held,
            release=release,
            prune=prune,
        )
        if prune:
            self.pruned_at = now
        announce = asked != self.published or bool(release)
        self.published = asked
        self._released(release)
        fleet, leases, renewed = _read(rows, self.id, asked)
        self._renewed(held, renewed, now)
        self._forget()
        owners = spread_roles(fleet)
        await self._take(conn, owners, leases)
        if self.release:
            release = sorted(self.release)
            await self._execute(conn, "release", _RELEASE, roles=release)
            self._released(release)
        elif announce:
            await self._execute(conn, "announce", _ANNOUNCE)
        self._arm()

    def _released(self, names: Iterable[str]) -> None:
        for name in names:
            self.release.discard(name)
            state = self.roles.get(name)
            if state is not None:
                self._lose(name, state, "its lease was given back")

    def _renewed(self, held: list[str], renewed: set[str], sent: float) -> None:
        deadline = sent + self.scheduler._lease
        for name in held:
            role = self.roles[name]
            if name in renewed and role.leased:
                role.deadline = deadline
            elif name in renewed:
                self.release.add(name)  # lapsed here while the renewal was on its way
            else:
                self._lose(name, role, "its lease lapsed before it was renewed")

    def _forget(self) -> None:
        """Drop roles nobody asks for or holds any more."""
        for name in [n for n, r in self.roles.items() if not (r.callers or r.leased)]:
            if name not in self.release and not self.roles[name].lock.locked():
                left_at = self.roles[name].left_at
                if left_at is None or self.loop.time() - left_at >= self.scheduler._heartbeat:
                    del self.roles[name]

    async def _take(
        self,
        conn: psycopg.AsyncConnection[Any],
        owners: dict[str, str],
        leases: dict[str, tuple[str, bool]],
    ) -> None:
        take: list[str] = []
        for name, role in self.roles.items():
            owner = owners.get(name)
            role.owned = owner == self.id
            if role.leased and not role.owned:
                if role.holder is not None:
                    role.holder.lose(f"it moved to member {owner}", moved=True)
                else:
                    role.ready.clear()
                    self.release.add(name)
            elif role.owned and not role.leased and role.callers:
                holder, valid = leases.get(name, ("", False))
                if not valid or holder == self.id:
                    take.append(name)
        if not take:
            return
        sent = self.loop.time()
        rows = await self._execute(conn, "take", _TAKE, roles=take)
        for (name,) in rows:
            state = self.roles.get(name)
            if state is None:
                self.release.add(name)
                continue
            state.leased = True
            state.deadline = sent + self.scheduler._lease
            if state.callers:
                state.ready.set()
            else:
                self.release.add(name)  # its callers left meanwhile

    def _arm(self) -> None:
        """Cancel bodies whose lease was not renewed in time, when that time comes."""
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        deadlines = [r.deadline for r in self.roles.values() if r.leased]
        if deadlines:
            self.watchdog = self.loop.call_at(min(deadlines), self._expire)

    def _expire(self) -> None:
        self.watchdog = None
        now = self.loop.time()
        for name, role in self.roles.items():
            if role.leased and role.deadline <= now:
                self._lose(name, role, "its lease was not renewed in time")
        self._arm()

    def _lose(self, name: str, role: _Role, why: str) -> None:
        role.leased = False
        role.ready.clear()
        self.release.discard(name)
        if role.holder is not None:
            role.holder.lose(why)

    def _lose_all(self, why: str) -> None:
        for name, role in self.roles.items():
            if role.leased:
                self._lose(name, role, why)
            role.ready.set()  # waiting callers look again (and see the scheduler closed)

    async def stop(self) -> None:
        """Leave the fleet: holders lose their roles, rows are deleted, the task ends."""
        self.stopping = True
        if self.loop is not asyncio.get_running_loop():
            # Its loop has ended (or runs elsewhere): its leases lapse on their own.
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.poke.set)
            return
        for role in self.roles.values():
            if role.holder is not None:
                role.holder.lose("its scheduler was closed")
        self.poke.set()
        task = self.task
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(self.scheduler._check_timeout + 1):
                    await asyncio.shield(task)
            except TimeoutError:
                await stop_task(task)
        self._lose_all("its scheduler was closed")


def _read(
    rows: Iterable[tuple[Any, ...]], me: str, asked: frozenset[str]
) -> tuple[dict[str, list[str]], dict[str, tuple[str, bool]], set[str]]:
    """The fleet (role -> members asking), the leases and the renewed roles of a beat."""
    fleet: dict[str, list[str]] = {name: [me] for name in asked}
    leases: dict[str, tuple[str, bool]] = {}
    renewed: set[str] = set()
    for kind, name, roles, holder, valid in rows:
        if kind == "renewed":
            renewed.add(name)
        elif kind == "member":
            for role in roles:
                fleet.setdefault(role, []).append(name)
        else:
            leases[name] = (holder, bool(valid))
    return fleet, leases, renewed


class _Lease:
    """One caller's holding of a role: an async context manager, used once."""

    def __init__(self, scheduler: PostgresRoleScheduler, name: str) -> None:
        self._scheduler = scheduler
        self._name = name
        self._member: _Member | None = None
        self._role: _Role | None = None
        self._task: asyncio.Task[Any] | None = None
        self._lost = ""
        self._moved = False  # handed to another member on purpose (see RoleLost.moved)
        self._cancelled = False

    async def __aenter__(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"a role lease of {self._name!r} cannot be entered twice")
        self._task = asyncio.current_task()
        member = self._member = self._scheduler._member_here()
        role = self._role = member.want(self._name)
        try:
            await role.lock.acquire()
            try:
                await self._until_ready(member, role)
            except BaseException:
                role.lock.release()
                raise
        except BaseException:
            member.unwant(self._name, role)
            if role.leased and role.holder is None and not role.lock.locked():
                member.give_back(self._name, role)
            raise
        role.holder = self

    async def _until_ready(self, member: _Member, role: _Role) -> None:
        while True:
            raise_if_cancelling()
            if self._scheduler._closed or member.stopping:
                raise RuntimeError(
                    f"the PostgresRoleScheduler is closed (awaiting role {self._name!r})"
                )
            if member.failure is not None:
                raise type(member.failure)(str(member.failure))  # a fresh one per caller
            if role.leased and role.ready.is_set():
                return
            if not role.leased:
                role.ready.clear()  # set only to wake waiters (failure, closing)
            await role.ready.wait()

    def lose(self, why: str, *, moved: bool = False) -> None:
        """The role is lost: cancel the body so that RoleLost ends the block."""
        if self._lost or self._task is None:
            return
        self._lost = why
        self._moved = moved
        self._cancelled = True
        self._task.cancel(f"role {self._name!r} lost: {why}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        member, role = self._member, self._role
        assert member is not None and role is not None
        role.holder = None
        member.unwant(self._name, role)
        if self._lost or not (role.owned and role.callers and role.leased):
            member.give_back(self._name, role)
        role.lock.release()
        if not self._lost:
            return False
        if self._cancelled and self._task is not None and self._task.uncancel() > 0:
            return False  # cancelled from outside as well: let that cancellation through
        if exc is None or isinstance(exc, asyncio.CancelledError):
            raise RoleLost(f"role {self._name!r} was lost: {self._lost}", moved=self._moved)
        return False
