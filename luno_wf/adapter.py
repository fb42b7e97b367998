"""The interfaces adapters implement, as typing Protocols.

The engine depends on nothing else: any object with these methods is an adapter, and the
conformance suite (``luno-wf-adaptertest``) proves it behaves. The contracts follow
luno/workflow's, tightened where noted:

* :meth:`RecordStore.store` writes the record *and* its outbox row in one transaction, and
  is a compare-and-set on ``record.meta.version``.
* :meth:`EventReceiver.recv` returns ``(event, ack)``; events not acked are redelivered to
  the next receiver of the same name.
* :meth:`RoleScheduler.await_role` is an async context manager held for as long as the
  caller works under the role; in a fleet, roles are spread over the live members
  (:func:`spread_roles`) and move when one joins, leaves, dies or stalls.
* A record store that keeps history (:class:`HistoryStore`) appends one
  :class:`HistoryEntry` with every write it makes, in the same transaction.
* A record store that shares a database with the streamer (:class:`DirectEvents`) may
  append each write's event to the stream itself, in the same transaction, instead of an
  outbox row.
* A streamer that can split a topic among receiver names (:class:`ShardedStreamer`) gives
  each shard of a step only its own events.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from ._deadletter import DeadLetter
from ._event import ConnectorEvent, Event, OutboxEvent
from ._filter import OrderType, RecordFilter
from ._fleet import spread_roles as spread_roles
from ._history import HistoryEntry
from ._outbox import OutboxData
from ._record import Record
from ._timeoutrecord import TimeoutRecord

__all__ = [
    "Ack",
    "BatchLookup",
    "BatchOutboxDeleter",
    "BatchReceiver",
    "BatchSender",
    "BatchStore",
    "ConnectorConstructor",
    "ConnectorConsumer",
    "DeadLetter",
    "DeadLetterStore",
    "DirectEvents",
    "EventReceiver",
    "EventSender",
    "EventStreamer",
    "HistoryEntry",
    "HistoryStore",
    "OutboxDataLister",
    "RecordStore",
    "RoleScheduler",
    "ShardedStreamer",
    "spread_roles",
    "TimeoutStore",
]

Ack = Callable[[], Awaitable[None]]
"""Acknowledge a received event: the receiver's name will not see it again."""


@runtime_checkable
class RecordStore(Protocol):
    """Durable storage of records, with a transactional outbox."""

    async def store(self, record: Record) -> None:
        """Insert or update ``record`` and write its outbox row, atomically.

        A run id not yet stored is inserted. An existing one is updated only if the stored
        version is ``record.meta.version - 1``; otherwise raise
        :class:`~luno_wf.errors.StaleRecord`. Inserting a run while another run of the same
        (workflow, foreign id) is unfinished raises
        :class:`~luno_wf.errors.WorkflowInProgress`. The outbox row is
        :func:`luno_wf.make_outbox_event` of the record as stored.
        """
        ...

    async def lookup(self, run_id: str) -> Record:
        """The record of ``run_id``; :class:`~luno_wf.errors.RecordNotFound` if none."""
        ...

    async def latest(self, workflow_name: str, foreign_id: str) -> Record:
        """The most recently *created* run of the foreign id; ``RecordNotFound`` if none."""
        ...

    async def list(
        self,
        workflow_name: str,
        *,
        offset: int = 0,
        limit: int = 25,
        order: OrderType = OrderType.ASCENDING,
        filters: Sequence[RecordFilter] = (),
    ) -> builtins.list[Record]:
        """Records of a workflow (all workflows if the name is empty), in first-stored order.

        ``offset`` skips that many matching records in the requested order; ``limit`` 0
        means 25.
        """
        ...

    async def list_outbox_events(
        self, workflow_name: str, limit: int
    ) -> builtins.list[OutboxEvent]:
        """Up to ``limit`` unpublished outbox rows of the workflow, oldest first."""
        ...

    async def delete_outbox_event(self, id: str) -> None:
        """Remove a published outbox row; removing a missing one is not an error."""
        ...


@runtime_checkable
class BatchLookup(Protocol):
    """Optional: a record store that looks up many runs in one call.

    Step consumers of receivers that hand out batches (:class:`BatchReceiver`) read the
    records of a whole batch at once instead of one round trip per event.
    """

    async def lookup_many(self, run_ids: Sequence[str]) -> dict[str, Record]:
        """The records of ``run_ids`` that exist, by run id (missing ids are left out)."""
        ...


@runtime_checkable
class BatchStore(Protocol):
    """Optional: a record store that writes many runs' records in one call.

    Step consumers of receivers that hand out batches (:class:`BatchReceiver`) run a
    batch's steps one after another and write their results together, so a database
    store can take a whole batch in one round trip.
    """

    async def store_many(self, records: Sequence[Record]) -> builtins.list[Exception | None]:
        """Store the records as :meth:`RecordStore.store` would, one by one, in order.

        Each record is written with its outbox row atomically and independently of the
        others. The result has one entry per record, in order: ``None`` if it was stored,
        else the :class:`~luno_wf.errors.StaleRecord` or
        :class:`~luno_wf.errors.WorkflowInProgress` that :meth:`RecordStore.store` would
        have raised for it, storing the records one by one in the given order (and nothing
        of it was written). The outbox rows of the stored records follow the order of
        ``records``. Any other error is raised; the records are then each either stored or
        not, as after a crash.

        Raises:
            ValueError: Two records have the same run id.

        """
        ...


@runtime_checkable
class OutboxDataLister(Protocol):
    """Optional: a record store that lists outbox rows already decoded.

    An in-process store need not encode rows only for its publisher to decode them again;
    the result must match :meth:`RecordStore.list_outbox_events` row for row.
    """

    async def list_outbox_data(
        self, workflow_name: str, limit: int
    ) -> builtins.list[tuple[str, OutboxData]]:
        """Up to ``limit`` unpublished rows as ``(row id, decoded payload)``, oldest first.

        Set each payload's ``created_at`` to the row's write time, as
        :meth:`RecordStore.list_outbox_events` gives it, for the outbox lag metric.
        """
        ...


@runtime_checkable
class DeadLetterStore(Protocol):
    """Optional: a record store that keeps the events consumers set aside.

    Without it, a poison event is still logged (with every field) and acknowledged, so one
    bad row never halts a consumer; with it, the event can be listed and replayed.
    """

    async def set_aside(self, letter: DeadLetter) -> None:
        """Keep ``letter`` (its ``id`` is new)."""
        ...

    async def list_dead_letters(
        self, workflow_name: str | None = None, *, limit: int = 100
    ) -> builtins.list[DeadLetter]:
        """The dead letters (of one workflow, or all), oldest first."""
        ...

    async def delete_dead_letter(self, id: str) -> None:
        """Forget a dead letter (after a replay, say); an unknown id is not an error."""
        ...


@runtime_checkable
class BatchOutboxDeleter(Protocol):
    """Optional: a record store that deletes many published outbox rows in one call."""

    async def delete_outbox_events(self, ids: Sequence[str]) -> None:
        """Remove every row of ``ids``; missing ones are ignored."""
        ...


@runtime_checkable
class HistoryStore(Protocol):
    """Optional: a record store that keeps the history of every run.

    Every write of a record (:meth:`RecordStore.store`, and each record
    :meth:`BatchStore.store_many` applies) appends one :class:`HistoryEntry` in the same
    transaction, keyed by ``(run_id, version)``: an entry exists if and only if the write
    happened. Refused writes (:class:`~luno_wf.errors.StaleRecord`,
    :class:`~luno_wf.errors.WorkflowInProgress`, anything rolled back) leave none.

    History is on for every workflow, without object snapshots, until
    :meth:`configure_history` says otherwise. Writing a record whose run state is
    :attr:`~luno_wf.RunState.DATA_DELETED` scrubs its run's history in the same
    transaction: every entry's ``object`` becomes ``None`` and its ``reason`` and
    ``error`` become empty, so that history never undoes a data deletion.
    """

    def configure_history(
        self, workflow_name: str, *, enabled: bool = True, objects: bool = False
    ) -> None:
        """Turn history on or off for one workflow's later writes (a plain method).

        Args:
            workflow_name: The workflow the settings apply to.
            enabled: Append an entry with every write of the workflow's records.
            objects: Keep each write's encoded object in its entry (object snapshots).

        """
        ...

    async def history(self, run_id: str) -> builtins.list[HistoryEntry]:
        """The run's entries, oldest first (by version).

        Empty if history was off for all of the run's writes (or they were pruned).

        Raises:
            RecordNotFound: No run has that id.

        """
        ...

    async def prune_history(
        self, before: datetime, *, workflow_name: str | None = None, batch_size: int = 1000
    ) -> int:
        """Delete the entries with ``at < before``, but never a run's newest entry.

        The entries are deleted ``batch_size`` at a time, each batch in a short transaction
        of its own, so that pruning never holds locks for long. An entry that a concurrent
        write holds may be left for a later prune rather than waited for.

        Args:
            before: Entries older than this go; timezone-aware.
            workflow_name: Only this workflow's entries (all workflows if ``None``).
            batch_size: Entries per batch; at least 1.

        Returns:
            How many entries were deleted.

        Raises:
            ValueError: ``batch_size`` is below 1, or ``before`` is naive.

        """
        ...


@runtime_checkable
class DirectEvents(Protocol):
    """Optional: a record store that appends each write's event to the event stream itself.

    A store on the same database as the workflow's streamer can write the event in the
    transaction that writes the record, where other stores write an outbox row for the
    outbox publisher to send later: one statement per move instead of three, and the event
    exists if and only if the write happened, as with the outbox.
    """

    def publishes_events(self, workflow_name: str, streamer: EventStreamer) -> bool:
        """Whether the store appends the events of ``workflow_name``'s records to ``streamer``.

        A plain method, called once per workflow when it is built (before any write of
        it). Return True only if the store can append to that very stream: from then on
        every write of the workflow's records (:meth:`RecordStore.store`, and each record
        :meth:`BatchStore.store_many` applies) appends, in the same transaction, the event
        the outbox publisher would have sent (topic, foreign id, type and headers of
        :func:`luno_wf.outbox_data` of the record) and writes no outbox row, and receivers
        are woken as by a send. The engine then runs its outbox publisher only as a sweeper
        of rows other writers left (``outbox-sweeper`` in ``Workflow.states()``). Return
        False and the store keeps writing outbox rows for the workflow.
        """
        ...


class EventSender(Protocol):
    """Publishes events to one topic."""

    async def send(self, foreign_id: str, status_type: int, headers: Mapping[str, str]) -> None:
        """Publish one event; when this returns the event is durable."""
        ...

    async def close(self) -> None:
        """Release resources; safe to call twice."""
        ...


@runtime_checkable
class BatchSender(Protocol):
    """Optional: a sender that publishes many events in one call, in order."""

    async def send_many(self, events: Sequence[tuple[str, int, Mapping[str, str]]]) -> None:
        """Publish ``(foreign_id, status_type, headers)`` triples; durable when this returns."""
        ...


class EventReceiver(Protocol):
    """Reads one topic under a durable name; receivers sharing a name share the work."""

    async def recv(self) -> tuple[Event, Ack]:
        """Wait for the next event (cancellable) and return it with its ack."""
        ...

    async def close(self) -> None:
        """Stop receiving; un-acked events go back to the name's other receivers. Safe twice."""
        ...


@runtime_checkable
class BatchReceiver(Protocol):
    """Optional: a receiver that hands out the events it already holds, several at a time."""

    async def recv_many(self, limit: int) -> builtins.list[tuple[Event, Ack]]:
        """Wait for at least one event (cancellable), then take up to ``limit`` in all.

        The events after the first are those available without waiting, in order, each
        with its own ack.
        """
        ...


class EventStreamer(Protocol):
    """Makes senders and receivers of topics."""

    async def new_sender(self, topic: str) -> EventSender:
        """A sender for ``topic``."""
        ...

    async def new_receiver(
        self,
        topic: str,
        name: str,
        *,
        stream_from_latest: bool = False,
        poll_frequency: timedelta | None = None,
    ) -> EventReceiver:
        """A receiver of ``topic`` resuming at the last position acked under ``name``.

        With ``stream_from_latest`` and no position yet for ``name``, start at the head of
        the topic as of this call (events sent after it are delivered).
        ``poll_frequency`` is a hint for adapters that poll.
        """
        ...


@runtime_checkable
class ShardedStreamer(Protocol):
    """Optional: a streamer whose receivers can take one shard of a topic's events.

    A step with ``parallel_count`` above 1 has one consumer per shard, each a receiver name
    of its own on the step's topic, keeping the events whose id modulo the count is its
    shard's (luno's sharding). Without this, each shard receives every event and drops the
    others'; with it, the engine opens each shard's receiver with
    :meth:`new_shard_receiver` and the streamer hands it only its own.
    """

    async def new_shard_receiver(
        self,
        topic: str,
        name: str,
        *,
        shard: int,
        total: int,
        stream_from_latest: bool = False,
        poll_frequency: timedelta | None = None,
    ) -> EventReceiver:
        """A receiver of the events of ``topic`` whose id modulo ``total`` is ``shard - 1``.

        ``shard`` counts from 1. As :meth:`EventStreamer.new_receiver` otherwise: it
        resumes at ``name``'s position, which moves past the other shards' events, and
        receivers of one name share its events. A name keeps one shard: the engine's shard
        names carry their shard and count (``...-consumer-2-of-4``).
        """
        ...


class RoleScheduler(Protocol):
    """Grants roles so that each piece of work runs in exactly one place, across a fleet.

    The fleet contract:

    * Every process using a scheduler instance is a *member* of its fleet (the instances
      sharing one backend: a database and namespace, or the replicas of one in-memory
      scheduler). A member takes part in the spread of the roles its callers ask for.
    * Each role belongs to exactly one live member at a time, its *owner*, and roles are
      spread evenly: rendezvous (highest-random-weight) hashing of role names over the live
      members that ask for them, with loads bounded so that counts stay within one of even
      (:func:`spread_roles`). Every member computes the same owners from the same view of
      the fleet, with no coordinator, and a change of membership moves few roles.
    * A member *holds* a role under a lease it renews by heartbeat. When a member joins,
      leaves or dies, roles move within a bounded time: the scheduler documents it (on
      PostgreSQL, by default, a second after a join or a clean leave, and after the
      lease plus a heartbeat once a member dies or stalls).
    * A holder that no longer owns a role (a member joined that now owns it) gives it up:
      its body is cancelled and :class:`~luno_wf.errors.RoleLost` raised out of the block;
      the new owner takes the role once it is released, or once the lease lapses.
    * A member that fails to renew its lease in time (stopped, blocked, cut off) loses the
      role when the lease lapses; when it wakes, its renewal fails and the body is
      cancelled with ``RoleLost`` before it does anything else. Work under a role is fenced
      by the record store's compare-and-set, so a slow ex-holder can never apply a stale
      write.
    * Several callers of one member asking for one role take it in turn.
    """

    def await_role(self, role: str) -> AbstractAsyncContextManager[None]:
        """Hold ``role`` for the duration of an ``async with`` block.

        Entering waits until this member owns ``role`` and this caller alone holds its
        lease (cancellable at once); leaving releases it. If the role is lost while held
        (it moved to another member, or the lease lapsed), the body is cancelled and
        :class:`~luno_wf.errors.RoleLost` is raised out of the block.
        """
        ...


@runtime_checkable
class TimeoutStore(Protocol):
    """Durable storage of timeouts."""

    async def create(
        self,
        workflow_name: str,
        foreign_id: str,
        run_id: str,
        status: int,
        expire_at: datetime,
        *,
        timer: int = 0,
        version: int = 0,
    ) -> None:
        """Insert a timeout with a store-assigned increasing id.

        ``timer`` and ``version`` tie the row to the timer and the record version that made
        it; a second create with the same ``(run_id, status, timer, version)`` is ignored
        (so a redelivered event does not duplicate timeouts).
        """
        ...

    async def complete(self, id: int) -> None:
        """Mark a timeout as fired; it is no longer valid."""
        ...

    async def cancel(self, id: int) -> None:
        """Remove a timeout; cancelling an unknown id is not an error."""
        ...

    async def list(self, workflow_name: str) -> builtins.list[TimeoutRecord]:
        """The workflow's timeouts that are not completed, in id order."""
        ...

    async def list_valid(
        self, workflow_name: str, status: int, now: datetime
    ) -> builtins.list[TimeoutRecord]:
        """Uncompleted timeouts of that status with ``expire_at <= now``, in id order."""
        ...


class ConnectorConsumer(Protocol):
    """Reads events from an external source under one durable consumer name."""

    async def recv(self) -> tuple[ConnectorEvent, Ack]:
        """Wait for the next event (cancellable) and return it with its ack."""
        ...

    async def close(self) -> None:
        """Stop reading; safe to call twice."""
        ...


class ConnectorConstructor(Protocol):
    """Makes connector consumers."""

    async def make(self, consumer_name: str) -> ConnectorConsumer:
        """A consumer whose position is kept under ``consumer_name``."""
        ...
