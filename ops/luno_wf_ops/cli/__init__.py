"""The ``luno-wf`` command line: runs, actions, workflows, the outbox, lag, history, the web UI.

Exit codes: 0 ok, 1 unexpected error, 2 bad usage, 3 unknown run id, 4 refused (the
run's state does not allow it; a bulk action partly refused), 5 unsupported by the store
or the loaded app, 6 cannot connect to the database (or its schema is missing).
"""

from __future__ import annotations

import click

from ._actions import action_commands
from ._context import EXIT, Settings, default_operator
from ._misc import history_group, lag, outbox, ui, workflows
from ._output import Output
from ._runs import runs

__all__ = ["EXIT", "cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dsn", envvar="LUNO_WF_DSN", metavar="DSN", help="PostgreSQL DSN [env LUNO_WF_DSN]."
)
@click.option(
    "--schema",
    envvar="LUNO_WF_SCHEMA",
    default="luno_wf",
    show_default=True,
    help="The adapter's schema [env LUNO_WF_SCHEMA].",
)
@click.option(
    "--app",
    envvar="LUNO_WF_APP",
    metavar="MODULE:ATTR",
    help="Your built workflows (a Workflow or a list): decoded objects, status graphs.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "jsonl"]),
    default="table",
    show_default=True,
    help="Human tables, or stable JSON / JSON lines.",
)
@click.option(
    "--operator",
    envvar="LUNO_WF_OPERATOR",
    metavar="NAME",
    help="Who acts, recorded with each action [env LUNO_WF_OPERATOR; default: login name].",
)
@click.pass_context
def cli(
    ctx: click.Context,
    dsn: str | None,
    schema: str,
    app: str | None,
    output: str,
    operator: str | None,
) -> None:
    """Operate luno_wf workflows stored in PostgreSQL."""
    ctx.obj = Settings(
        dsn=dsn,
        schema=schema,
        app=app,
        output=Output(output),
        operator=operator or default_operator(),
    )


cli.add_command(runs)
for _command in action_commands():
    cli.add_command(_command)
cli.add_command(workflows)
cli.add_command(outbox)
cli.add_command(lag)
cli.add_command(history_group)
cli.add_command(ui)


def main() -> None:
    """The ``luno-wf`` console script."""
    cli(prog_name="luno-wf")
