"""The web UI's pages and form handlers, over :class:`~luno_wf_ops.OpsService`."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import attrs
from jinja2 import Environment
from starlette.datastructures import ImmutableMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from luno_wf import RunState
from luno_wf.errors import InvalidRunStateTransition, RecordNotFound, StaleRecord

from .._model import RunDetail, RunQuery, RunRow, Verb
from ..errors import OpsError
from ..service import OpsService, one_line
from ._graph import NodeCounts, status_graph_svg
from ._params import query_from
from ._security import CSRF_FIELD, check_csrf, csrf_token, set_csrf_cookie

__all__ = ["Authorize", "Identity", "Redact", "Settings", "Views", "default_identity"]

Authorize = Callable[[Request, str], bool | Awaitable[bool]]
"""``authorize(request, action)``: may this request take ``action`` (``"pause"``,
``"resume"``, ``"cancel"``, ``"delete-data"``)? May be async."""

Identity = Callable[[Request], str | Awaitable[str]]
"""``identity(request)``: the operator's name, recorded with every action. May be async."""

Redact = Callable[[RunRow, Any], Any]
"""``redact(row, data)``: what a run page shows of the run's object.

``data`` is the object as JSON data (the default codec's form), or its text when it is not
JSON; the result is shown as indented JSON, or as is when it is a string. May be async. If
it raises, the page shows no object."""

OBJECT_CAP = 64 * 1024  # characters of an object's JSON shown on a run page
PAGE_SIZE = 50


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def default_identity(request: Request) -> str:
    """The authenticated user's display name (Starlette's auth), else ``"anonymous"``."""
    user = request.scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        return str(getattr(user, "display_name", "") or "anonymous")
    return "anonymous"


@attrs.frozen(kw_only=True)
class Settings:
    """How the UI was configured by :func:`~luno_wf_ops.create_app`."""

    read_only: bool
    authorize: Authorize | None
    identity: Identity
    redact: Redact | None
    stuck_after: timedelta
    title: str


class Views:
    """The pages and form handlers.

    Links are made from the mount point (``root_path``), so the app works mounted at any
    prefix.
    """

    def __init__(self, service: OpsService, env: Environment, settings: Settings) -> None:
        self.service = service
        self.env = env
        self.settings = settings

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def base(request: Request) -> str:
        """The URL path the app is mounted at (no trailing slash)."""
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def allowed(self, request: Request, verb: Verb) -> bool:
        """Whether this request may take ``verb``: actions on, and ``authorize`` agrees."""
        if self.settings.read_only:
            return False
        if self.settings.authorize is None:
            return True
        return bool(await _maybe_await(self.settings.authorize(request, verb.value)))

    async def allowed_verbs(self, request: Request) -> list[Verb]:
        """The actions this request may take."""
        return [verb for verb in Verb if await self.allowed(request, verb)]

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        """Render a page template with the common context, setting the CSRF cookie."""
        base = self.base(request)
        page = self.env.get_template(name).render(
            base=base,
            title=self.settings.title,
            read_only=self.settings.read_only,
            csrf_field=CSRF_FIELD,
            csrf_token=csrf_token(request),
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(page, status_code=status)
        set_csrf_cookie(request, response)
        return response

    def error(self, request: Request, status: int, message: str) -> Response:
        """An error page saying what was wrong."""
        return self.render(request, "error.html", status=status, message=message)

    # -- pages --------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        """Counts per status (on each loaded workflow's graph), stuck runs, outbox backlog."""
        counts = await self.service.counts()
        stuck_count, stuck = await self.service.stuck(self.settings.stuck_after)
        base = self.base(request)
        graphs = []
        for loaded in self.service.catalog.all():
            nodes: dict[int, NodeCounts] = {}
            for c in counts:
                if c.workflow_name == loaded.name:
                    n = nodes.get(c.status, NodeCounts())
                    paused = c.count if c.run_state == RunState.PAUSED else 0
                    nodes[c.status] = NodeCounts(n.total + c.count, n.paused + paused)
            graphs.append((loaded.name, status_graph_svg(loaded, nodes, f"{base}/runs")))
        stuck_query = self.service.stuck_query(self.settings.stuck_after)
        return self.render(
            request,
            "overview.html",
            counts=counts,
            graphs=graphs,
            stuck=stuck.rows,
            stuck_count=stuck_count,
            stuck_after=_duration(self.settings.stuck_after),
            stuck_link=urlencode(stuck_query.to_params()),
            outbox=await self.service.outbox(),
            lag=await self.service.lag(),
            now=self.service.clock.now(),
        )

    async def runs(self, request: Request) -> Response:
        """The runs page: filters in the query string, keyset pages, bulk action links."""
        params = request.query_params
        empty = [k for k, v in params.multi_items() if not v.strip()]
        if empty:  # a submitted filter form: keep the URL to what is set
            kept = [(k, v) for k, v in params.multi_items() if v.strip()]
            url = f"{self.base(request)}/runs" + (f"?{urlencode(kept)}" if kept else "")
            return RedirectResponse(url, status_code=303)
        try:
            query = query_from(params)
            page = await self.service.list_runs(query, cursor=params.get("cursor"), limit=PAGE_SIZE)
        except ValueError as error:
            return self.error(request, 400, one_line(error))
        filters = query.to_params()
        return self.render(
            request,
            "runs.html",
            query=query,
            page=page,
            filters=urlencode(filters),
            next_link=urlencode([*filters, ("cursor", page.next_cursor or "")]),
            first_page=not params.get("cursor"),
            workflows=await self.service.workflow_names(),
            run_states=[s for s in RunState if s.valid()],
            verbs=await self.allowed_verbs(request) if filters else [],
            statuses=_status_names(self.service),
        )

    async def run(self, request: Request) -> Response:
        """One run: record, object, history, inspection and actions."""
        run_id = request.path_params["run_id"]
        try:
            return await self._run_page(request, run_id, message=request.query_params.get("done"))
        except RecordNotFound:
            return self.error(request, 404, f"unknown run id {run_id!r}")

    async def _run_page(
        self,
        request: Request,
        run_id: str,
        *,
        message: str | None = None,
        problem: str = "",
        status: int = 200,
    ) -> Response:
        detail = await self.service.run(run_id)
        redacting = self.settings.redact is not None
        inspection = await self.service.inspect(run_id, hide_object=redacting)
        allowed = await self.allowed_verbs(request)
        return self.render(
            request,
            "run.html",
            status=status,
            detail=detail,
            object_text=await self.object_text(detail),
            redacting=redacting,
            history=await self.service.history(run_id),
            inspection=inspection,
            verbs=[v for v in inspection.verbs if v in allowed],
            message=message,
            problem=problem,
            live=not detail.row.run_state.finished(),
        )

    async def object_text(self, detail: RunDetail) -> tuple[str, int, str]:
        """The object as shown: text cut at the cap, its full length, and a note.

        Through the redaction hook when there is one; if the hook fails, nothing is shown.
        """
        if self.settings.redact is None:
            return (*_object_text(detail.object_json, detail.object_bytes), "")
        data = detail.object_json
        if data is None and detail.object_bytes != b"null":
            data = detail.object_bytes.decode("utf-8", errors="replace")
        try:
            shown = await _maybe_await(self.settings.redact(detail.row, data))
        except Exception as error:  # fail closed: a broken hook shows nothing
            return "", 0, f"Hidden: the redaction hook failed ({type(error).__name__})."
        if not isinstance(shown, str):
            shown = json.dumps(shown, indent=2, ensure_ascii=False, sort_keys=True, default=str)
        return shown[:OBJECT_CAP], len(shown), "Redacted for display."

    async def history(self, request: Request) -> Response:
        """The history timeline of a run alone (the run page refreshes it with htmx)."""
        run_id = request.path_params["run_id"]
        try:
            history = await self.service.history(run_id)
            record = await self.service.record(run_id)
        except RecordNotFound:
            return self.error(request, 404, f"unknown run id {run_id!r}")
        return self.render(
            request,
            "history.html",
            history=history,
            run_id=run_id,
            live=not record.run_state.finished(),
        )

    async def act(self, request: Request) -> Response:
        """A form's action on one run: pause, resume, cancel or delete data, with a reason."""
        run_id = request.path_params["run_id"]
        verb = await self._verb(request)
        form = await request.form()
        check_csrf(request, form)
        reason = str(form.get("reason", ""))
        operator = str(await _maybe_await(self.settings.identity(request)))
        try:
            await self.service.act(run_id, verb, reason=reason, operator=operator)
        except RecordNotFound:
            return self.error(request, 404, f"unknown run id {run_id!r}")
        except (InvalidRunStateTransition, StaleRecord, OpsError, ValueError) as error:
            return await self._run_page(request, run_id, problem=one_line(error), status=409)
        done = f"{verb.past} by {operator}"
        url = f"{self.base(request)}/runs/{run_id}?{urlencode({'done': done})}"
        return RedirectResponse(url, status_code=303)

    async def _verb(self, request: Request) -> Verb:
        try:
            verb = Verb(request.path_params["verb"])
        except ValueError:
            raise HTTPException(404, "no such action") from None
        if self.settings.read_only:
            raise HTTPException(403, "this UI is read-only: actions are off")
        if not await self.allowed(request, verb):
            raise HTTPException(403, f"not allowed to {verb.value}")
        return verb

    async def bulk_confirm(self, request: Request) -> Response:
        """Confirm a bulk action: how many runs match, how many it applies to, a reason."""
        verb = await self._verb(request)
        try:
            query = query_from(request.query_params)
        except ValueError as error:
            return self.error(request, 400, one_line(error))
        if query.is_empty():
            return self.error(request, 400, "a bulk action needs at least one filter")
        preview = await self.service.preview(query, verb)
        return self.render(
            request,
            "bulk.html",
            verb=verb,
            preview=preview,
            query=query,
            hidden=query.to_params(),
            filters=urlencode(query.to_params()),
        )

    async def bulk_apply(self, request: Request) -> Response:
        """Apply a confirmed bulk action, refusing if more runs are eligible than confirmed."""
        verb = await self._verb(request)
        form = await request.form()
        check_csrf(request, form)
        try:
            query = query_from(
                ImmutableMultiDict([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
            )
            expected = int(str(form.get("expected", "0")))
            if query.is_empty():
                raise ValueError("a bulk action needs at least one filter")
            result = await self.service.act_bulk(
                query,
                verb,
                reason=str(form.get("reason", "")),
                operator=str(await _maybe_await(self.settings.identity(request))),
                expected=expected,
            )
        except (OpsError, ValueError) as error:
            return self.error(request, 409, one_line(error))
        return self.render(
            request,
            "bulk_done.html",
            verb=verb,
            result=result,
            filters=urlencode(query.to_params()),
        )

    async def workflows(self, request: Request) -> Response:
        """Every workflow, with its runs and (when loaded) its statuses."""
        return self.render(request, "workflows.html", workflows=await self.service.workflows())

    async def workflow(self, request: Request) -> Response:
        """One loaded workflow's graph, with its counts, and its Mermaid text."""
        name = request.path_params["name"]
        loaded = self.service.catalog.get(name)
        if loaded is None:
            return self.error(request, 404, f"workflow {name!r} is not loaded in this UI")
        counts = await self.service.counts(RunQuery(workflow=name))
        nodes: dict[int, NodeCounts] = {}
        for c in counts:
            n = nodes.get(c.status, NodeCounts())
            paused = c.count if c.run_state == RunState.PAUSED else 0
            nodes[c.status] = NodeCounts(n.total + c.count, n.paused + paused)
        svg = status_graph_svg(loaded, nodes, f"{self.base(request)}/runs")
        return self.render(
            request, "workflow.html", loaded=loaded, svg=svg, mermaid=loaded.mermaid()
        )


def _status_names(service: OpsService) -> list[str]:
    names: set[str] = set()
    for loaded in service.catalog.all():
        names.update(name for _, name in loaded.statuses())
    return sorted(names)


def _object_text(value: Any, raw: bytes) -> tuple[str, int]:
    """The object as indented JSON (or raw text), cut at the cap, and its full length."""
    if value is not None or raw == b"null":
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    else:
        text = raw.decode("utf-8", errors="replace")
    return text[:OBJECT_CAP], len(text)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
