"""Retrying transient broker errors with exponential back-off."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    NodeNotReadyError,
    RequestTimedOutError,
)

from .errors import KafkaUnavailable

__all__ = ["Backoff", "is_transient", "retry_transient"]

T = TypeVar("T")

logger = logging.getLogger("luno_wf_kafka")

_FIRST_DELAY = 0.1
_MAX_DELAY = 5.0

# Errors that mean "the broker is away or busy": worth waiting for. aiokafka marks most of
# its retriable protocol errors with ``retriable = True``; these few it does not.
_TRANSIENT: tuple[type[BaseException], ...] = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    NodeNotReadyError,
    RequestTimedOutError,
    ConnectionError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: a lost connection or a retriable broker error."""
    if isinstance(exc, KafkaUnavailable):  # already retried until its deadline
        return False
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


class Backoff:
    """Delays of 0.1 s doubling to 5 s, and a deadline after which to give up."""

    def __init__(self, what: str, give_up_after: timedelta) -> None:
        self._what = what
        self._deadline = time.monotonic() + give_up_after.total_seconds()
        self._give_up_after = give_up_after
        self._delay = _FIRST_DELAY

    def remaining(self) -> float:
        """Seconds left before the deadline (may be negative)."""
        return self._deadline - time.monotonic()

    def give_up(self, reason: str) -> KafkaUnavailable:
        """The error to raise when the deadline has passed."""
        return KafkaUnavailable(
            f"{self._what}: {reason} within {self._give_up_after.total_seconds():g} s "
            "(retry_timeout)"
        )

    async def wait(self, exc: BaseException) -> None:
        """Log ``exc`` and sleep before the next attempt; raise if the deadline has passed.

        Raises:
            KafkaUnavailable: The deadline has passed; ``exc`` is its cause.

        """
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise KafkaUnavailable(
                f"{self._what}: still failing after {self._give_up_after.total_seconds():g} s "
                f"(retry_timeout): {exc!r}"
            ) from exc
        delay = min(self._delay, remaining)
        logger.warning("%s failed, retrying in %.1f s: %r", self._what, delay, exc)
        await asyncio.sleep(delay)
        self._delay = min(self._delay * 2, _MAX_DELAY)


async def retry_transient(
    operation: Callable[[], Awaitable[T]], *, what: str, give_up_after: timedelta
) -> T:
    """Await ``operation()`` until it succeeds, retrying transient errors with back-off.

    Raises:
        KafkaUnavailable: Transient errors lasted longer than ``give_up_after``.

    """
    backoff = Backoff(what, give_up_after)
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not is_transient(exc):
                raise
            await backoff.wait(exc)
