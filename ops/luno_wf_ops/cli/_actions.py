"""``luno-wf pause|resume|cancel|delete-data``: one run, or every run a filter matches."""

from __future__ import annotations

from typing import Any

import click

from .._model import BulkResult, RunQuery, Verb
from ._context import EXIT, Settings, execute, fail
from ._filters import filter_options, query_of

__all__ = ["action_commands"]


def _single(settings: Settings, verb: Verb, run_id: str, reason: str) -> None:
    result = execute(
        settings,
        lambda s: s.act(run_id, verb, reason=reason, operator=settings.operator),
    )
    row = result.row
    settings.output.item(
        result.to_json(),
        f"run {row.run_id} ({row.workflow_name}/{row.foreign_id}) {verb.past}: "
        f"now {row.run_state.name} at {row.status_name}, version {row.version}",
    )


def _preview(settings: Settings, verb: Verb, query: RunQuery) -> None:
    preview = execute(settings, lambda s: s.preview(query, verb))
    others = preview.matched - preview.eligible
    settings.output.item(
        preview.to_json(),
        f"would {verb.label.lower()} {preview.eligible} of {preview.matched} matching runs"
        + (f" ({others} in a run state that does not allow it)" if others else "")
        + "; run again with --yes instead of --dry-run to do it",
    )


def _bulk(settings: Settings, verb: Verb, query: RunQuery, reason: str) -> None:
    result: BulkResult = execute(
        settings,
        lambda s: s.act_bulk(query, verb, reason=reason, operator=settings.operator),
    )
    text = f"{verb.past}: {len(result.done)} runs"
    if result.failed:
        text += f"; {len(result.failed)} refused:\n" + "\n".join(
            f"  {run_id}: {why}" for run_id, why in result.failed.items()
        )
    settings.output.item(result.to_json(), text)
    if result.failed:
        raise click.exceptions.Exit(EXIT.REFUSED)


def _make(verb: Verb) -> click.Command:
    need = " (required)" if verb.needs_reason else ""

    @click.command(verb.value, help=_HELP[verb])
    @click.argument("run_id", required=False)
    @click.option("--reason", default="", metavar="R", help=f"Why{need}; kept with the run.")
    @click.option("--filter", "bulk", is_flag=True, help="Act on every run the filters match.")
    @filter_options
    @click.option("--dry-run", is_flag=True, help="With --filter: only count the runs.")
    @click.option("--yes", is_flag=True, help="With --filter: do it.")
    @click.pass_obj
    def command(
        settings: Settings,
        /,
        run_id: str | None,
        reason: str,
        bulk: bool,
        dry_run: bool,
        yes: bool,
        **options: Any,
    ) -> None:
        query = query_of(options)
        if verb.needs_reason and not reason.strip() and not dry_run:
            fail(EXIT.USAGE, f"{verb.value} needs --reason")
        if not bulk:
            if run_id is None or not query.is_empty() or dry_run or yes:
                fail(EXIT.USAGE, "give a RUN_ID, or --filter with filters and --dry-run or --yes")
            _single(settings, verb, run_id, reason)
        elif run_id is not None or query.is_empty() or dry_run == yes:
            fail(EXIT.USAGE, "--filter takes filters (no RUN_ID) and one of --dry-run or --yes")
        elif dry_run:
            _preview(settings, verb, query)
        else:
            _bulk(settings, verb, query, reason)

    return command


_HELP = {
    Verb.PAUSE: "Pause a run (or, with --filter, every matching run); steps stop until resumed.",
    Verb.RESUME: "Resume a paused run (or every matching one); its status is processed again.",
    Verb.CANCEL: "Cancel a run (or every matching one) for good. Needs --reason.",
    Verb.DELETE_DATA: "Request deletion of a finished run's data (or every matching one's). "
    "Needs --reason.",
}


def action_commands() -> list[click.Command]:
    """The four action commands."""
    return [_make(verb) for verb in Verb]
