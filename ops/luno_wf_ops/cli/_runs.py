"""``luno-wf runs list|show|history``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from .._history import observed_item
from .._model import HistoryItem
from ..service import OpsService
from ._context import Settings, execute
from ._filters import filter_options, query_of

__all__ = ["runs"]

RUN_COLUMNS = [
    ("workflow_name", "WORKFLOW"),
    ("foreign_id", "FOREIGN ID"),
    ("run_id", "RUN ID"),
    ("status", "STATUS"),
    ("run_state", "RUN STATE"),
    ("version", "VERSION"),
    ("created_at", "CREATED"),
    ("updated_at", "UPDATED"),
]


@click.group()
def runs() -> None:
    """List runs, show one, follow its history."""


@runs.command("list")
@filter_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--cursor", metavar="C", help="The page after the one that printed this cursor.")
@click.pass_obj
def list_runs(settings: Settings, /, limit: int, cursor: str | None, **options: Any) -> None:
    """Runs, newest first, a page at a time (filters combine)."""
    query = query_of(options)
    page = execute(settings, lambda s: s.list_runs(query, cursor=cursor, limit=limit))
    settings.output.rows([row.to_json() for row in page.rows], RUN_COLUMNS, empty="No runs match.")
    if page.next_cursor and settings.output.human:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@runs.command("show")
@click.argument("run_id")
@click.pass_obj
def show(settings: Settings, run_id: str) -> None:
    """One run: its record, object and inspection."""

    async def work(service: OpsService) -> dict[str, Any]:
        detail = await service.run(run_id)
        inspection = await service.inspect(run_id)
        data = detail.to_json()
        data["can"] = [verb.value for verb in inspection.verbs]
        data["next_statuses"] = inspection.next_statuses
        data["timeouts"] = [
            {"status": status, "expire_at": at.isoformat()} for status, at in inspection.timeouts
        ]
        data["outbox_pending"] = inspection.outbox_pending
        if inspection.report:
            data["report"] = inspection.report
        return data

    data = execute(settings, work)
    settings.output.item(data, _show_text(data))


def _show_text(data: dict[str, Any]) -> str:
    lines = [
        f"{key:<16}{data[key]}"
        for key in ("run_id", "workflow_name", "foreign_id", "status", "run_state", "version")
    ]
    lines += [
        f"{'reason':<16}{data['run_state_reason']}" if data["run_state_reason"] else "",
        f"{'created':<16}{data['created_at']}",
        f"{'updated':<16}{data['updated_at']}",
        f"{'can':<16}{', '.join(data['can']) or 'nothing: finished'}",
    ]
    if data["next_statuses"]:
        lines.append(f"{'leads to':<16}{', '.join(data['next_statuses'])}")
    for timeout in data["timeouts"]:
        lines.append(f"{'timeout':<16}{timeout['status']} at {timeout['expire_at']}")
    lines.append(f"{'object':<16}{data['object_type'] or '(raw)'}")
    lines.append(json.dumps(data["object"], indent=2, ensure_ascii=False))
    if data.get("report"):
        lines += ["", data["report"]]
    return "\n".join(line for line in lines if line != "")


HISTORY_COLUMNS = [
    ("version", "V"),
    ("at", "AT"),
    ("status", "STATUS"),
    ("run_state", "RUN STATE"),
    ("actor", "ACTOR"),
    ("reason", "REASON"),
    ("error", "ERROR"),
]


@runs.command("history")
@click.argument("run_id")
@click.option("--follow", is_flag=True, help="Keep printing new writes until the run finishes.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@click.pass_obj
def history(settings: Settings, run_id: str, follow: bool, interval: float) -> None:
    """The run's writes, oldest first (with --follow, as they happen)."""
    if follow:
        execute(settings, lambda s: _follow(settings, s, run_id, interval))
        return
    view = execute(settings, lambda s: s.history(run_id))
    if not view.available:
        click.echo(f"luno-wf: note: {view.note}", err=True)
        if settings.output.human:
            return
    settings.output.rows(
        [item.to_json() for item in view.items], HISTORY_COLUMNS, empty="No history entries."
    )


async def _follow(settings: Settings, service: OpsService, run_id: str, interval: float) -> None:
    last = 0
    noted = False
    while True:
        record = await service.record(run_id)
        view = await service.history(run_id)
        items: list[HistoryItem] = view.items
        if not view.available:
            if not noted:
                click.echo(f"luno-wf: note: {view.note}; following the record instead", err=True)
                noted = True
            items = [observed_item(record, service.catalog)]
        for item in items:
            if item.version > last:
                _print_item(settings, item)
                last = item.version
        if record.run_state.finished() and last >= record.meta.version:
            return
        await asyncio.sleep(interval)


def _print_item(settings: Settings, item: HistoryItem) -> None:
    if not settings.output.human:
        settings.output.line(item.to_json())
        return
    text = f"v{item.version}  {item.at.isoformat()}  {item.status_name}  {item.run_state.name}"
    if item.actor:
        text += f"  by {item.actor}"
    if item.reason:
        text += f"  — {item.reason}"
    if item.error:
        text += f"  error: {item.error}"
    click.echo(text)
