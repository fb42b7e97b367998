"""Per-process options and error back-off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs

__all__ = ["DEFAULT_OPTIONS", "ExponentialBackoff", "Options"]


@attrs.frozen
class ExponentialBackoff:
    """Back-off that doubles (by ``multiplier``) after each consecutive error, up to ``maximum``.

    Pass it as ``err_backoff=`` instead of a constant ``timedelta``. The count resets once the
    process makes progress again.
    """

    initial: timedelta = timedelta(seconds=1)
    maximum: timedelta = timedelta(minutes=5)
    multiplier: float = 2.0

    def __attrs_post_init__(self) -> None:
        if self.initial <= timedelta(0) or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError(
                "ExponentialBackoff needs 0 < initial <= maximum and multiplier >= 1, got "
                f"initial={self.initial}, maximum={self.maximum}, multiplier={self.multiplier}"
            )

    def delay(self, attempt: int) -> timedelta:
        """The wait after the ``attempt``-th consecutive error (1-based)."""
        seconds = self.initial.total_seconds() * self.multiplier ** max(attempt - 1, 0)
        return min(timedelta(seconds=seconds), self.maximum)


def backoff_delay(backoff: timedelta | ExponentialBackoff, attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th consecutive error."""
    if isinstance(backoff, ExponentialBackoff):
        return backoff.delay(attempt).total_seconds()
    return backoff.total_seconds()


def _positive_duration(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, ExponentialBackoff) and attribute.name == "err_backoff":
        return
    if not isinstance(value, timedelta):
        raise TypeError(f"{attribute.name} must be a timedelta, got {value!r}")
    if value < timedelta(0):
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def _count(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class Options:
    """Options of one background process; ``None`` means "use the workflow default".

    Attributes:
        parallel_count: Number of shards consuming the status (each event lands in exactly one).
        polling_frequency: How often polling adapters and the timeout poller look for work.
        err_backoff: Wait after a process error before it restarts (constant or exponential).
        lag: Process an event only once it is at least this old.
        lag_alert: Log a warning, and set the ``workflow_process_lag_alert`` gauge, when
            events are processed later than this after publication.
        pause_after_err_count: Pause a run after this many errors in a row (0: never).
        concurrency: Events one consumer handles at once (never two of the same run); 1
            processes a shard strictly in order, as luno does.

    """

    parallel_count: int | None = attrs.field(default=None, validator=_count)
    polling_frequency: timedelta | None = attrs.field(default=None, validator=_positive_duration)
    err_backoff: timedelta | ExponentialBackoff | None = attrs.field(
        default=None, validator=_positive_duration
    )
    lag: timedelta | None = attrs.field(default=None, validator=_positive_duration)
    lag_alert: timedelta | None = attrs.field(default=None, validator=_positive_duration)
    pause_after_err_count: int | None = attrs.field(default=None, validator=_count)
    concurrency: int | None = attrs.field(default=None, validator=_count)

    def merged_over(self, base: Options) -> Options:
        """These options, with unset fields taken from ``base``."""
        return Options(
            **{
                field.name: getattr(base, field.name)
                if getattr(self, field.name) is None
                else getattr(self, field.name)
                for field in attrs.fields(Options)
            }
        )


DEFAULT_OPTIONS = Options(
    parallel_count=1,
    polling_frequency=timedelta(milliseconds=500),
    err_backoff=timedelta(seconds=1),
    lag=timedelta(0),
    lag_alert=timedelta(minutes=30),
    pause_after_err_count=0,
    concurrency=1,
)
"""luno's defaults: one shard, 500 ms polling, 1 s back-off, no lag, 30 min lag alert, no pause."""


@attrs.frozen(kw_only=True)
class Resolved:
    """Options with every field set (internal)."""

    parallel_count: int
    polling_frequency: timedelta
    err_backoff: timedelta | ExponentialBackoff
    lag: timedelta
    lag_alert: timedelta
    pause_after_err_count: int
    concurrency: int

    @classmethod
    def of(cls, options: Options, defaults: Options) -> Resolved:
        merged = options.merged_over(defaults).merged_over(DEFAULT_OPTIONS)
        return cls(**{f.name: getattr(merged, f.name) for f in attrs.fields(Options)})
