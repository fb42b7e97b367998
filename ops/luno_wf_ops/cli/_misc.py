"""``luno-wf workflows``, ``outbox stats``, ``lag``, ``history prune`` and ``ui``."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import click
import uvicorn

from .._parsing import parse_duration
from ..service import OpsService
from ..web import create_app
from ._context import EXIT, Settings, execute, fail

__all__ = ["history_group", "lag", "outbox", "ui", "workflows"]


@click.group()
def workflows() -> None:
    """The workflows in the store and in the app."""


@workflows.command("list")
@click.pass_obj
def list_workflows(settings: Settings) -> None:
    """Every workflow with runs, or loaded with --app."""
    found = execute(settings, lambda s: s.workflows())
    settings.output.rows(
        [w.to_json() for w in found],
        [("name", "WORKFLOW"), ("runs", "RUNS"), ("loaded", "LOADED"), ("statuses", "STATUSES")],
        empty="No workflows.",
    )


@workflows.command("graph")
@click.argument("name")
@click.option("--direction", default="LR", type=click.Choice(["LR", "TB", "RL", "BT"]))
@click.pass_obj
def graph(settings: Settings, name: str, direction: str) -> None:
    """The workflow's status graph as a Mermaid diagram (needs --app)."""

    async def work(service: OpsService) -> str:
        return service.workflow(name).mermaid(direction)

    text = execute(settings, work)
    if settings.output.human:
        settings.output.text(text)
    else:
        settings.output.item({"name": name, "mermaid": text}, text)


@click.group("outbox")
def outbox() -> None:
    """The transactional outbox."""


@outbox.command("stats")
@click.pass_obj
def outbox_stats(settings: Settings) -> None:
    """Unpublished events per workflow, and how old the oldest is."""
    stats = execute(settings, lambda s: s.outbox())
    now = datetime.now(UTC)
    rows = [
        {
            **s.to_json(),
            "age_seconds": round((now - s.oldest).total_seconds(), 1) if s.oldest else None,
        }
        for s in stats
    ]
    settings.output.rows(
        rows,
        [
            ("workflow_name", "WORKFLOW"),
            ("pending", "PENDING"),
            ("oldest", "OLDEST"),
            ("age_seconds", "AGE (S)"),
        ],
        empty="The outbox is empty: every event is published.",
    )


@click.command()
@click.pass_obj
def lag(settings: Settings) -> None:
    """How far each consumer of the PostgreSQL event stream is behind."""
    view = execute(settings, lambda s: s.lag())
    if not view.consumers and settings.output.human:
        settings.output.text(view.note)
        return
    now = datetime.now(UTC)
    rows = [
        {
            **c.to_json(),
            "age_seconds": (
                round((now - c.oldest_unacked).total_seconds(), 1) if c.oldest_unacked else None
            ),
            "waiting_text": f"{c.waiting:,}" + ("+" if c.waiting_capped else ""),
        }
        for c in view.consumers
    ]
    if not settings.output.human:
        for row in rows:
            del row["waiting_text"]
    settings.output.rows(
        rows,
        [
            ("topic", "TOPIC"),
            ("consumer", "CONSUMER"),
            ("workflow_name", "WORKFLOW"),
            ("status", "STATUS"),
            ("waiting_text", "WAITING"),
            ("claimed", "NOT ACKED"),
            ("oldest_unacked", "OLDEST UNACKED"),
            ("age_seconds", "AGE (S)"),
        ],
    )


@click.group("history")
def history_group() -> None:
    """Run history kept by the store."""


@history_group.command("prune")
@click.option("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h, 1h30m.")
@click.option("--workflow", metavar="W", help="Only this workflow's history.")
@click.pass_obj
def prune(settings: Settings, older_than: str, workflow: str | None) -> None:
    """Forget history entries older than DURATION (a run's newest entry always stays)."""
    try:
        age = parse_duration(older_than)
    except ValueError as error:
        fail(EXIT.USAGE, f"--older-than: {error}")
    pruned = execute(settings, lambda s: s.prune_history(age, workflow=workflow))
    settings.output.item(
        {"pruned": pruned, "older_than_seconds": int(age.total_seconds())},
        f"pruned {pruned} history entries older than {older_than}",
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--allow-actions", is_flag=True, help="Allow pause, resume, cancel, delete data.")
@click.pass_obj
def ui(settings: Settings, host: str, port: int, allow_actions: bool) -> None:
    """Serve the web UI (read-only unless --allow-actions)."""
    service = settings.service()
    operator = settings.operator
    app = create_app(service, read_only=not allow_actions, identity=lambda request: operator)
    config = uvicorn.Config(app, host=host, port=port, log_level="info")
    mode = "actions allowed" if allow_actions else "read-only"
    click.echo(f"luno-wf ui on http://{host}:{port}/ ({mode}); Ctrl-C stops it", err=True)

    async def serve() -> None:
        try:
            await uvicorn.Server(config).serve()
        finally:
            await service.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
