"""What every command shares: the global options, the service, errors as exit codes."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import attrs
import click
import psycopg

from luno_wf.errors import (
    InvalidRunStateTransition,
    RecordNotFound,
    StaleRecord,
    WorkflowError,
)

from .._parsing import load_workflows
from ..errors import ReasonRequired, SelectionChanged, Unsupported
from ..service import OpsService, one_line
from ._output import Output

__all__ = ["EXIT", "Settings", "execute", "fail"]

T = TypeVar("T")


class EXIT:
    """The exit codes of ``luno-wf`` (docs/operations.md lists them)."""

    OK = 0
    ERROR = 1  # anything unexpected
    USAGE = 2  # bad options or arguments (click's own code too)
    NOT_FOUND = 3  # unknown run id
    REFUSED = 4  # the run's state does not allow it, or a bulk action was partly refused
    UNSUPPORTED = 5  # the store or the loaded app lacks what was asked (history, a graph)
    UNAVAILABLE = 6  # cannot connect to the database, or its schema is missing


@attrs.define
class Settings:
    """The global options."""

    dsn: str | None
    schema: str
    app: str | None
    output: Output
    operator: str

    def service(self) -> OpsService:
        """A service on the database, with the app's workflows when ``--app`` is given."""
        if not self.dsn:
            fail(EXIT.USAGE, "no database: pass --dsn or set LUNO_WF_DSN")
        try:
            workflows = load_workflows(self.app) if self.app else []
        except (ValueError, ImportError) as error:
            fail(EXIT.USAGE, one_line(error))
        return OpsService.from_dsn(self.dsn, schema=self.schema, workflows=workflows)


def default_operator() -> str:
    """``$LUNO_WF_OPERATOR``, else the login name."""
    try:
        return os.environ.get("LUNO_WF_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def fail(code: int, message: str) -> NoReturn:
    """Print ``luno-wf: message`` on stderr (one line) and exit with ``code``."""
    click.echo(f"luno-wf: {message.splitlines()[0] if message else 'error'}", err=True)
    raise click.exceptions.Exit(code)


def _code(error: BaseException) -> tuple[int, str]:
    if isinstance(error, RecordNotFound):
        what = f"unknown run id {error.run_id!r}" if error.run_id else one_line(error)
        return EXIT.NOT_FOUND, what
    if isinstance(error, InvalidRunStateTransition):
        return EXIT.REFUSED, f"refused: {one_line(error)}"
    if isinstance(error, StaleRecord | SelectionChanged):
        return EXIT.REFUSED, f"refused: {one_line(error)}"
    if isinstance(error, ReasonRequired):
        return EXIT.USAGE, one_line(error)
    if isinstance(error, Unsupported):
        return EXIT.UNSUPPORTED, one_line(error)
    if isinstance(error, psycopg.OperationalError):
        return EXIT.UNAVAILABLE, f"cannot connect to PostgreSQL: {one_line(error)}"
    if isinstance(error, psycopg.Error):
        return EXIT.UNAVAILABLE, f"database error: {one_line(error)}"
    if isinstance(error, ValueError):
        return EXIT.USAGE, one_line(error)
    if isinstance(error, WorkflowError):
        return EXIT.ERROR, one_line(error)
    return EXIT.ERROR, f"{type(error).__name__}: {one_line(error)}"


def execute(settings: Settings, work: Callable[[OpsService], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh service in its own event loop; errors exit with their code."""

    async def main() -> T:
        async with settings.service() as service:
            return await work(service)

    try:
        return asyncio.run(main())
    except click.exceptions.Exit:
        raise
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
    except Exception as error:
        code, message = _code(error)
        fail(code, message)
