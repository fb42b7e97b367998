from __future__ import annotations

from datetime import timedelta

import pytest

from luno_wf import ExponentialBackoff, Options
from luno_wf._options import DEFAULT_OPTIONS, Resolved, backoff_delay


def test_default_options_merge_over_the_defaults() -> None:
    resolved = Resolved.of(Options(), Options(parallel_count=4))
    assert resolved.parallel_count == 4
    # luno's WithDefaultOptions(ParallelCount(4)) would have zeroed these:
    assert resolved.err_backoff == timedelta(seconds=1)
    assert resolved.polling_frequency == timedelta(milliseconds=500)
    assert resolved.lag_alert == timedelta(minutes=30)


def test_process_options_win_over_workflow_defaults() -> None:
    resolved = Resolved.of(
        Options(err_backoff=timedelta(seconds=3)),
        Options(err_backoff=timedelta(seconds=2), pause_after_err_count=5),
    )
    assert resolved.err_backoff == timedelta(seconds=3)
    assert resolved.pause_after_err_count == 5
    assert Resolved.of(Options(), Options()).pause_after_err_count == 0
    assert DEFAULT_OPTIONS.parallel_count == 1


def test_exponential_backoff_doubles_up_to_the_cap() -> None:
    backoff = ExponentialBackoff(timedelta(milliseconds=100), timedelta(seconds=1))
    assert [backoff_delay(backoff, n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_delay(timedelta(seconds=2), 9) == 2.0
    with pytest.raises(ValueError, match="initial <= maximum"):
        ExponentialBackoff(timedelta(seconds=2), timedelta(seconds=1))


def test_invalid_options_name_the_field() -> None:
    with pytest.raises(ValueError, match="pause_after_err_count"):
        Options(pause_after_err_count=-1)
    with pytest.raises(ValueError, match="lag"):
        Options(lag=timedelta(seconds=-1))
    with pytest.raises(TypeError, match="err_backoff"):
        Options(err_backoff=3)  # type: ignore[arg-type]
