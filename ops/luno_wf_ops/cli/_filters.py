"""The run filter options shared by ``runs list`` and the bulk actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .._model import RunQuery, parse_run_state
from .._parsing import parse_moment

__all__ = ["filter_options", "query_of"]

F = TypeVar("F", bound=Callable[..., Any])

_TIMES = ("created_after", "created_before", "updated_after", "updated_before")


def filter_options(fn: F) -> F:
    """Add ``--workflow``, ``--status``, ``--run-state``, ``--foreign-id`` and the times."""
    for name in reversed(_TIMES):
        flag = "--" + name.replace("_", "-")
        fn = click.option(flag, name, metavar="TIME", help="ISO 8601; UTC if no offset.")(fn)
    options = [
        click.option("--workflow", metavar="W", help="Runs of this workflow."),
        click.option(
            "--status",
            "statuses",
            multiple=True,
            metavar="NAME",
            help="At this status (name or number; repeat for any of several).",
        ),
        click.option(
            "--run-state",
            "run_states",
            multiple=True,
            metavar="STATE",
            help="In this run state (RUNNING, PAUSED, ...; repeat for any of several).",
        ),
        click.option("--foreign-id", metavar="ID", help="Runs of this foreign id."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def query_of(options: dict[str, Any]) -> RunQuery:
    """The query the filter options describe (pops them from ``options``).

    Raises:
        click.BadParameter: A run state or time that does not parse.

    """
    try:
        times = {
            name: parse_moment(value, "--" + name.replace("_", "-"))
            for name in _TIMES
            if (value := options.pop(name, None))
        }
        states = tuple(parse_run_state(s) for s in options.pop("run_states", ()))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return RunQuery(
        workflow=options.pop("workflow", None),
        statuses=tuple(options.pop("statuses", ())),
        run_states=states,
        foreign_id=options.pop("foreign_id", None),
        **times,
    )
