from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest

from luno_wf._converter import Codec


class Colour(enum.IntEnum):
    RED = 1


@attrs.define
class Thing:
    at: datetime
    colour: Colour = Colour.RED
    tags: list[str] = attrs.field(factory=list)
    big: int = 0


def test_round_trip_with_aware_datetimes_enums_and_big_ints() -> None:
    codec = Codec(Thing)
    at = datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    data = codec.encode(Thing(at=at, tags=["a"], big=2**70))
    assert b'"colour":1' in data
    back = codec.decode(data)
    assert back == Thing(at=at, tags=["a"], big=2**70)
    assert back.at.tzinfo is not None and back.at.astimezone(UTC) == at


def test_naive_datetimes_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        Codec(Thing).encode(Thing(at=datetime(2025, 1, 1)))
