"""The service layer both front ends call: runs listed, counted, shown and acted on."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import attrs
from luno_wf_postgres import PostgresRecordStore

from luno_wf import Clock, Record, RecordStore, RunState, SystemClock, Workflow
from luno_wf.errors import WorkflowError

from ._actions import actor_of, move
from ._catalog import Catalog, LoadedWorkflow
from ._criteria import Criteria, decode_cursor, encode_cursor
from ._history import PruneCapable, inspection_report, read_history
from ._model import (
    ActionResult,
    BulkPreview,
    BulkResult,
    HistoryView,
    Inspection,
    LagView,
    OutboxStat,
    Page,
    RunDetail,
    RunQuery,
    RunRow,
    StatusCount,
    Verb,
    WorkflowSummary,
)
from ._postgres import PostgresSource
from ._sources import Listed, RunSource, ScanSource
from .errors import ReasonRequired, SelectionChanged, Unsupported

__all__ = ["OpsService"]

MAX_PAGE = 500
BULK_LIMIT = 10_000
NO_LAG = (
    "consumer lag is known for the PostgreSQL event stream only; with Kafka, see the "
    "consumer groups' lag in the broker's own tools"
)
NO_CONSUMERS = (
    "no consumer reads the PostgreSQL event stream of this schema (with Kafka, see the "
    "consumer groups' lag in the broker's own tools)"
)


class OpsService:
    """Runs of a record store for operators, with the user's workflows when they are loaded.

    From a store alone, status names come from the records (``meta.status_description``)
    and objects are shown as stored; with the built workflows, objects are decoded, status
    names come from their enums and the status graphs are known. A
    :class:`~luno_wf_postgres.PostgresRecordStore` is queried directly (filters, keyset
    pages and counts in SQL); any other store is read through its ``list()``.

    Args:
        store: The record store the workflows write to.
        workflows: The user's built workflows (none: the store alone).
        clock: The clock of "now" (stuck runs, updated_at of actions).
        owns_store: Close the store in :meth:`close` (as :meth:`from_dsn` does).

    """

    def __init__(
        self,
        store: RecordStore,
        *,
        workflows: Iterable[Workflow[Any, Any]] = (),
        clock: Clock | None = None,
        owns_store: bool = False,
    ) -> None:
        self.store = store
        self.catalog = Catalog(workflows)
        self.clock = clock or SystemClock()
        self._owns_store = owns_store
        self._source: RunSource = (
            PostgresSource(store) if isinstance(store, PostgresRecordStore) else ScanSource(store)
        )

    @classmethod
    def from_dsn(
        cls, dsn: str, *, schema: str = "luno_wf", workflows: Iterable[Workflow[Any, Any]] = ()
    ) -> OpsService:
        """A service on a PostgreSQL database (closed by :meth:`close`)."""
        pool = {"min_size": 1, "max_size": 4, "kwargs": {"connect_timeout": 10}}
        store = PostgresRecordStore(dsn, schema=schema, pool_kwargs=pool)
        return cls(store, workflows=workflows, owns_store=True)

    async def close(self) -> None:
        """Close the store if this service opened it."""
        close = getattr(self.store, "close", None)
        if self._owns_store and close is not None:
            await close()

    async def __aenter__(self) -> OpsService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- reading ----------------------------------------------------------------------

    def _row(self, listed: Listed) -> RunRow:
        return RunRow(
            workflow_name=listed.workflow_name,
            foreign_id=listed.foreign_id,
            run_id=listed.run_id,
            status=listed.status,
            status_name=self.catalog.status_name(
                listed.workflow_name, listed.status, listed.description
            ),
            run_state=listed.run_state,
            version=listed.version,
            created_at=listed.created_at,
            updated_at=listed.updated_at,
            reason=listed.reason,
        )

    def row_of(self, record: Record) -> RunRow:
        """The listed form of a record."""
        return self._row(Listed.of(0, record))

    async def list_runs(
        self, query: RunQuery | None = None, *, cursor: str | None = None, limit: int = 50
    ) -> Page:
        """A page of matching runs, newest first; pass ``next_cursor`` for the next page.

        Raises:
            ValueError: A bad cursor, a limit outside 1..500, or a naive time in the query.

        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        criteria = Criteria.of(query or RunQuery(), self.catalog)
        listed, more = await self._source.page(criteria, decode_cursor(cursor), limit)
        next_cursor = encode_cursor(listed[-1].position) if more and listed else None
        return Page(rows=[self._row(r) for r in listed], next_cursor=next_cursor)

    async def count_runs(self, query: RunQuery | None = None) -> int:
        """How many runs match ``query``."""
        return await self._source.count(Criteria.of(query or RunQuery(), self.catalog))

    async def counts(self, query: RunQuery | None = None) -> list[StatusCount]:
        """Matching runs counted per workflow, status and run state, sorted."""
        criteria = Criteria.of(query or RunQuery(), self.catalog)
        tally = await self._source.tally(criteria, frozenset(self.catalog.names()))
        counts = [
            StatusCount(
                workflow_name=workflow,
                status=status,
                status_name=self.catalog.status_name(workflow, status, description),
                run_state=state,
                count=n,
            )
            for (workflow, status, description, state), n in tally.items()
        ]
        return sorted(counts, key=lambda c: (c.workflow_name, c.status, c.run_state))

    def stuck_query(self, older_than: timedelta) -> RunQuery:
        """The runs initiated or running but not written for ``older_than``."""
        return RunQuery(
            run_states=(RunState.INITIATED, RunState.RUNNING),
            updated_before=self.clock.now() - older_than,
        )

    async def stuck(self, older_than: timedelta, *, limit: int = 10) -> tuple[int, Page]:
        """Runs initiated or running but not written for ``older_than``: how many, the newest."""
        query = self.stuck_query(older_than)
        return await self.count_runs(query), await self.list_runs(query, limit=limit)

    async def record(self, run_id: str) -> Record:
        """The stored record of ``run_id``; raises ``RecordNotFound``."""
        return await self.store.lookup(run_id)

    async def run(self, run_id: str) -> RunDetail:
        """One run with its object: decoded when its workflow is loaded.

        Raises:
            RecordNotFound: No run has that id.

        """
        record = await self.store.lookup(run_id)
        detail = RunDetail(
            row=self.row_of(record),
            object_json=_json_or_none(record.object),
            object_bytes=record.object,
            meta=attrs.asdict(record.meta),
        )
        loaded = self.catalog.get(record.workflow_name)
        if loaded is None or record.run_state == RunState.DATA_DELETED:
            return detail
        try:
            decoded = loaded.decode(record)
        except Exception as error:  # any codec failure is shown, not raised
            return attrs.evolve(detail, decode_error=f"{type(error).__name__}: {error}")
        return attrs.evolve(
            detail, object_type=type(decoded).__qualname__, object_repr=repr(decoded)
        )

    async def history(self, run_id: str) -> HistoryView:
        """The run's history, oldest first, or an empty view saying the store keeps none.

        Raises:
            RecordNotFound: No run has that id.

        """
        record = await self.store.lookup(run_id)
        return await read_history(self.store, self.catalog, record)

    async def inspect(self, run_id: str, *, hide_object: bool = False) -> Inspection:
        """What the run can do next, what waits for it, and the workflow's own report.

        With ``hide_object``, the report leaves the object out (the web UI's redaction).

        Raises:
            RecordNotFound: No run has that id.

        """
        record = await self.store.lookup(run_id)
        loaded = self.catalog.get(record.workflow_name)
        timeouts = await self._source.timeouts(record) or []
        return Inspection(
            verbs=[verb for verb in Verb if verb.applies_to(record.run_state)],
            next_statuses=loaded.next_statuses(record.status) if loaded else [],
            timeouts=[(self._status_name(record, s), at) for s, at in timeouts],
            outbox_pending=await self._source.outbox_pending(record),
            report=await inspection_report(loaded, run_id, hide_object=hide_object),
        )

    def _status_name(self, record: Record, status: int) -> str:
        same = status == record.status
        description = record.meta.status_description if same else ""
        return self.catalog.status_name(record.workflow_name, status, description)

    async def workflows(self) -> list[WorkflowSummary]:
        """Every workflow with runs in the store or loaded from the application."""
        runs = await self._source.workflow_runs()
        names = sorted(set(runs) | set(self.catalog.names()))
        summaries = []
        for name in names:
            loaded = self.catalog.get(name)
            statuses = [n for _, n in loaded.statuses()] if loaded else []
            summaries.append(
                WorkflowSummary(
                    name=name, runs=runs.get(name, 0), loaded=bool(loaded), statuses=statuses
                )
            )
        return summaries

    def workflow(self, name: str) -> LoadedWorkflow:
        """The loaded workflow named ``name``.

        Raises:
            Unsupported: It is not loaded (its graph needs the built workflow).

        """
        loaded = self.catalog.get(name)
        if loaded is None:
            loaded_names = ", ".join(self.catalog.names()) or "none"
            raise Unsupported(
                f"workflow {name!r} is not loaded (loaded: {loaded_names}); "
                "its graph needs the built workflow: pass --app module:attribute"
            )
        return loaded

    async def workflow_names(self) -> list[str]:
        """The names of the workflows with runs in the store or loaded, sorted.

        Cheaper than :meth:`workflows`: nothing is counted (on PostgreSQL, one index probe
        per workflow).
        """
        return sorted(set(await self._source.workflow_names()) | set(self.catalog.names()))

    async def outbox(self) -> list[OutboxStat]:
        """Unpublished outbox rows per workflow, with the oldest row's time."""
        return await self._source.outbox(await self.workflow_names())

    async def lag(self) -> LagView:
        """How far each consumer of the event stream is behind, where the store can tell.

        The PostgreSQL event stream keeps its log, its consumers' positions and their
        unacknowledged events in the adapter's schema, so its lag is known; any other
        store (or a Kafka stream) gives an empty view with a note saying so.
        """
        lags = await self._source.consumer_lag()
        if lags is None:
            return LagView(available=False, consumers=[], note=NO_LAG)
        described = []
        for lag in lags:
            workflow, status = self.catalog.describe_topic(lag.topic)
            described.append(attrs.evolve(lag, workflow_name=workflow, status_name=status))
        note = "" if described else NO_CONSUMERS
        return LagView(available=True, consumers=described, note=note)

    async def prune_history(self, older_than: timedelta, *, workflow: str | None = None) -> int:
        """Forget history entries older than ``older_than`` (never a run's newest).

        Raises:
            Unsupported: The store keeps no history.

        """
        if not isinstance(self.store, PruneCapable):
            raise Unsupported(
                f"{type(self.store).__name__} keeps no history, so there is nothing to prune"
            )
        before = self.clock.now() - older_than
        return await self.store.prune_history(before, workflow_name=workflow)

    # -- acting ----------------------------------------------------------------------

    async def act(self, run_id: str, verb: Verb, *, reason: str, operator: str) -> ActionResult:
        """Apply ``verb`` to one run: one compare-and-set write naming the operator.

        Raises:
            ReasonRequired: Cancel and delete data need a reason.
            ValueError: ``operator`` is empty.
            RecordNotFound: No run has that id.
            InvalidRunStateTransition: The run's state does not allow it.

        """
        reason = _checked_reason(verb, reason)
        actor = actor_of(operator)
        stored = await move(
            self.store, run_id, verb, reason=reason, actor=actor, now=self.clock.now
        )
        return ActionResult(verb=verb, row=self.row_of(stored), actor=actor)

    async def preview(self, query: RunQuery, verb: Verb) -> BulkPreview:
        """How many runs match ``query``, and to how many ``verb`` applies (a dry run)."""
        criteria = Criteria.of(query, self.catalog)
        matched = await self._source.count(criteria)
        eligible = await self._source.count(criteria.narrowed(verb.allowed_from()))
        return BulkPreview(verb=verb, matched=matched, eligible=eligible)

    async def act_bulk(
        self,
        query: RunQuery,
        verb: Verb,
        *,
        reason: str,
        operator: str,
        expected: int | None = None,
    ) -> BulkResult:
        """Apply ``verb`` to every matching run it applies to, one write each.

        Args:
            query: Which runs.
            verb: The action.
            reason: Why (required for cancel and delete data).
            operator: Who.
            expected: The eligible count the operator confirmed; if more runs are eligible
                now, nothing is done and :class:`SelectionChanged` is raised.

        Raises:
            SelectionChanged: More runs are eligible than ``expected``, or more than 10,000.

        """
        reason = _checked_reason(verb, reason)
        actor_of(operator)
        criteria = Criteria.of(query, self.catalog).narrowed(verb.allowed_from())
        run_ids = await self._collect(criteria, expected)
        done: list[str] = []
        failed: dict[str, str] = {}
        for run_id in run_ids:
            try:
                await self.act(run_id, verb, reason=reason, operator=operator)
            except WorkflowError as error:
                failed[run_id] = one_line(error)
            else:
                done.append(run_id)
        return BulkResult(verb=verb, done=done, failed=failed)

    async def _collect(self, criteria: Criteria, expected: int | None) -> list[str]:
        limit = BULK_LIMIT if expected is None else min(expected, BULK_LIMIT)
        run_ids: list[str] = []
        before: int | None = None
        while True:
            listed, more = await self._source.page(criteria, before, MAX_PAGE)
            run_ids.extend(r.run_id for r in listed)
            if len(run_ids) > limit:
                now = await self._source.count(criteria)
                raise SelectionChanged(
                    f"{now} runs are eligible now, more than the {limit} confirmed; "
                    "nothing was done: preview and confirm again"
                )
            if not more or not listed:
                return run_ids
            before = listed[-1].position


def _checked_reason(verb: Verb, reason: str) -> str:
    reason = reason.strip()
    if verb.needs_reason and not reason:
        raise ReasonRequired(f"{verb.value} needs a reason")
    return reason


def one_line(error: BaseException) -> str:
    """An error as one line: its message's first line, or its class name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def utc_now() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)
