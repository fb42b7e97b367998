"""The web UI: :func:`create_app` returns a Starlette app to mount at any prefix."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from luno_wf import RecordStore, Workflow

from ..service import OpsService
from ._security import SecurityHeaders
from ._views import Authorize, Identity, Redact, Settings, Views, default_identity

__all__ = ["Authorize", "Identity", "Redact", "create_app"]


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("luno_wf_ops", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["age"] = _age
    return env


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _age(moment: datetime | None, now: datetime) -> str:
    """How long before ``now`` a moment was, in its two largest units: ``"3h 12m"``, ``"45s"``."""
    if moment is None:
        return ""
    seconds = max(0, int((now - moment).total_seconds()))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for index, (unit, size) in enumerate(units):
        if seconds >= size or unit == "s":
            text = f"{seconds // size}{unit}"
            if unit != "s":
                next_unit, next_size = units[index + 1]
                text += f" {seconds % size // next_size}{next_unit}"
            return text
    return ""


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(f"{exc.status_code}: {exc.detail}", status_code=exc.status_code)


def _routes(views: Views) -> list[BaseRoute]:
    return [
        Route("/", views.overview, name="overview"),
        Route("/runs", views.runs, name="runs"),
        Route("/runs/bulk/{verb}", views.bulk_confirm, methods=["GET"], name="bulk"),
        Route("/runs/bulk/{verb}", views.bulk_apply, methods=["POST"]),
        Route("/runs/{run_id}", views.run, name="run"),
        Route("/runs/{run_id}/history", views.history, name="history"),
        Route("/runs/{run_id}/{verb}", views.act, methods=["POST"], name="act"),
        Route("/workflows", views.workflows, name="workflows"),
        Route("/workflows/{name}", views.workflow, name="workflow"),
        Mount("/static", StaticFiles(packages=[("luno_wf_ops", "static")]), name="static"),
    ]


def create_app(
    store: RecordStore | OpsService,
    *,
    workflows: Iterable[Workflow[Any, Any]] = (),
    read_only: bool = True,
    authorize: Authorize | None = None,
    identity: Identity | None = None,
    redact: Redact | None = None,
    stuck_after: timedelta = timedelta(hours=1),
    title: str = "luno_wf",
) -> Starlette:
    """The operator web UI over ``store``, as a Starlette (ASGI) app.

    Mount it at any prefix (``Mount("/ops", app=create_app(store))``) or serve it alone
    (``luno-wf ui``). Every response carries a strict Content-Security-Policy (no inline
    script or style); forms are protected against CSRF by a token in a cookie and a form
    field, and a foreign ``Origin`` is refused.

    Args:
        store: The record store the workflows write to (or a ready :class:`OpsService`).
        workflows: The built workflows: objects are decoded, status graphs drawn.
        read_only: Show runs but take no action (the default).
        authorize: ``authorize(request, action) -> bool`` (or async): whether the request
            may pause, resume, cancel or delete data; ``None`` lets every request act
            once ``read_only`` is off.
        identity: ``identity(request) -> str`` (or async): the operator named by each
            action; by default the authenticated user's display name, else
            ``"anonymous"``.
        redact: ``redact(row, data) -> shown`` (or async): what a run page shows of the
            run's object. ``data`` is the object as JSON data (its text if it is not
            JSON); a string result is shown as is, anything else as indented JSON. Runs
            on every run page, before the 64 KiB cap; if it raises, no object is shown.
            ``None`` shows the object as stored.
        stuck_after: A run initiated or running without a write for this long shows as
            stuck on the overview.
        title: Shown in the page header.

    """
    service = store if isinstance(store, OpsService) else OpsService(store, workflows=workflows)
    views = Views(
        service,
        _environment(),
        Settings(
            read_only=read_only,
            authorize=authorize,
            identity=identity or default_identity,
            redact=redact,
            stuck_after=stuck_after,
            title=title,
        ),
    )
    routes = _routes(views)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.service = service
    return app
