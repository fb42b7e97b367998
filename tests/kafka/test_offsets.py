"""The commit-offset bookkeeping, without a broker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from luno_wf_kafka._offsets import PartitionOffsets


def test_commit_advances_only_over_a_contiguous_acked_prefix() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 12, 15):  # gaps (compaction, transaction markers) are fine
        offsets.delivered(offset)
    steps = [(11, False, None), (10, True, 12), (15, False, 12), (12, True, 16)]
    for offset, moved, committable in steps:
        assert offsets.ack(offset) is moved
        assert offsets.committable == committable
    assert offsets.in_flight == 0


def test_unknown_and_repeated_acks_change_nothing() -> None:
    offsets = PartitionOffsets()
    offsets.delivered(3)
    offsets.delivered(5)
    assert offsets.ack(4) is False
    assert offsets.ack(7) is False
    assert offsets.ack(3) is True
    assert offsets.ack(3) is False
    assert offsets.committable == 4
    assert offsets.in_flight == 1


def test_offsets_must_increase() -> None:
    offsets = PartitionOffsets()
    offsets.delivered(5)
    with pytest.raises(ValueError, match="out of order"):
        offsets.delivered(5)
    offsets.ack(5)
    with pytest.raises(ValueError, match="out of order"):
        offsets.delivered(4)
    offsets.delivered(6)


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=40),
    data=st.data(),
)
def test_committable_is_one_past_the_longest_acked_prefix(
    gaps: list[int], data: st.DataObject
) -> None:
    delivered = []
    offset = data.draw(st.integers(min_value=0, max_value=1000))
    for gap in gaps:
        delivered.append(offset)
        offset += gap
    offsets = PartitionOffsets()
    for o in delivered:
        offsets.delivered(o)
    acks = data.draw(st.lists(st.sampled_from(delivered), max_size=60))
    acked: set[int] = set()
    for o in acks:
        acked.add(o)
        offsets.ack(o)
        prefix = 0
        while prefix < len(delivered) and delivered[prefix] in acked:
            prefix += 1
        expected = delivered[prefix - 1] + 1 if prefix else None
        assert offsets.committable == expected
        # Never at or past an un-acked delivered offset.
        unacked = [d for d in delivered if d not in acked]
        if unacked and offsets.committable is not None:
            assert offsets.committable <= min(unacked)
        assert offsets.in_flight == len(unacked)
