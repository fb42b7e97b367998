"""Error counting, automatic pausing, and the shared "decode or pause" path."""

from __future__ import annotations

import json
from typing import Any

import cattrs

from .._actor import error_text
from .._engine import Engine
from .._record import Record
from .._run import Run
from .._runstate import RunState
from ..errors import InvalidRunStateTransition, StaleRecord

__all__ = ["AUTO_PAUSE_REASON", "DECODE_ERRORS", "Failures"]

AUTO_PAUSE_REASON = "max error retry threshold hit - automatically paused"

DECODE_ERRORS = (ValueError, TypeError, KeyError, cattrs.BaseValidationError, json.JSONDecodeError)
"""What decoding a stored object raises when it no longer fits the object type."""


class Failures:
    """How one process counts a run's errors and pauses it after too many.

    The pause names the process's ``actor`` and keeps the error's type and message in
    ``meta.error``.

    Errors are counted per (process, run) and cleared by a success there. With
    ``threshold`` (``pause_after_err_count``) set, the run is paused when its count reaches
    it; *permanent* errors (an invalid transition, an undecodable object) cannot succeed on
    a retry, so with no threshold configured they pause the run at once rather than retry
    forever.
    """

    def __init__(
        self, engine: Engine[Any, Any], process_name: str, threshold: int, actor: str
    ) -> None:
        self._engine = engine
        self.process_name = process_name
        self.threshold = threshold
        self.actor = actor
        """What the process's writes name as their actor (``"step:CREATED"``)."""

    def clear(self, run_id: str) -> None:
        """Forget the run's errors here after a success."""
        self._engine.errors.clear(self.process_name, run_id)

    async def pause_if_due(
        self, record: Record, error: BaseException, *, permanent: bool = False
    ) -> bool:
        """Count ``error``; pause the run if that reaches the threshold.

        Returns whether the run is now paused (the caller then acks its event). The span
        of the work that failed is marked ERROR, and notes the pause.
        """
        engine, threshold = self._engine, self.threshold
        engine.tracing.failed(error)
        count = engine.errors.count(self.process_name, record.run_id)
        if threshold == 0 and not permanent:
            return False
        if threshold and count < threshold:
            return False
        reason = f"{AUTO_PAUSE_REASON}: {type(error).__name__}: {error}"
        try:
            await engine.controller(record, self.actor).transition(
                RunState.PAUSED, reason, error=error_text(error)
            )
        except (StaleRecord, InvalidRunStateTransition):
            # Another writer moved the run meanwhile; its newer event carries on.
            self.clear(record.run_id)
            return True
        self.clear(record.run_id)
        engine.tracing.paused(reason, count)
        engine.debug_log(
            "paused record after exceeding allowed error count",
            workflow_name=record.workflow_name,
            foreign_id=record.foreign_id,
            run_id=record.run_id,
        )
        return True

    async def decode(self, record: Record) -> Run[Any, Any] | None:
        """The record as a Run; None if its object does not decode and the run was paused.

        An object that does not decode is a permanent error; if the run is not paused for
        it (a threshold not yet reached), the decoding error is raised.
        """
        try:
            return self._engine.build_run(record, self.actor)
        except DECODE_ERRORS as err:
            await self.undecodable(record, err)
            return None

    async def undecodable(self, record: Record, error: Exception) -> None:
        """Log an object that does not decode; pause its run, or raise ``error``."""
        self._engine.logger.error(
            "cannot decode the object of run %s [process=%s]: %s: %s",
            record.run_id,
            self.process_name,
            type(error).__name__,
            error,
        )
        if not await self.pause_if_due(record, error, permanent=True):
            raise error
