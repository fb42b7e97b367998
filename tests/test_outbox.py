from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luno_wf import (
    Meta,
    Record,
    RunState,
    decode_outbox_data,
    encode_outbox_data,
    make_outbox_event,
)
from luno_wf._outbox import _RECENT

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def record(state: RunState, status: int = 2) -> Record:
    return Record(
        workflow_name="user sign up",
        foreign_id="f1",
        run_id="r1",
        run_state=state,
        status=status,
        object=b"{}",
        created_at=NOW,
        updated_at=NOW,
        meta=Meta(version=7),
    )


def test_known_bytes_of_a_small_message() -> None:
    # type 1, one header {"a": "b"}, run id "r": hand-checked protobuf wire bytes
    assert encode_outbox_data("r", 1, {"a": "b"}) == b"\x10\x01\x1a\x06\x0a\x01a\x12\x01b\x22\x01r"
    assert encode_outbox_data("", 0, {}) == b""


@pytest.mark.parametrize(
    ("state", "topic"),
    [
        (RunState.INITIATED, "user_sign_up-2"),
        (RunState.RUNNING, "user_sign_up-2"),
        (RunState.PAUSED, "user_sign_up-run-state-change"),
        (RunState.CANCELLED, "user_sign_up-run-state-change"),
        (RunState.COMPLETED, "user_sign_up-run-state-change"),
        (RunState.DATA_DELETED, "user_sign_up-run-state-change"),
        (RunState.REQUESTED_DATA_DELETED, "user_sign_up-delete"),
    ],
)
def test_outbox_event_topic_and_headers(state: RunState, topic: str) -> None:
    row_id, data = make_outbox_event(record(state))
    _RECENT.clear()  # decode the bytes for real, not from the in-process cache
    decoded = decode_outbox_data(data)
    assert row_id.startswith("outbox-id-")
    assert decoded.run_id == "r1"
    assert decoded.type == 2
    assert decoded.headers == {
        "foreign_id": "f1",
        "workflow_name": "user sign up",
        "topic": topic,
        "run_id": "r1",
        "run_state": str(int(state)),
        "record_version": "7",
    }


@given(
    run_id=st.text(),
    type_=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    headers=st.dictionaries(st.text(), st.text(), max_size=8),
)
def test_encode_decode_round_trip(run_id: str, type_: int, headers: dict[str, str]) -> None:
    decoded = decode_outbox_data(encode_outbox_data(run_id, type_, headers))
    assert (decoded.run_id, decoded.type, decoded.headers) == (run_id, type_, headers)


@pytest.mark.parametrize(
    "garbage", [b"\x1a\x05\x0a", b"\x10", b"\x22\xff\xff\xff\xff\x0f", b"\x1f"]
)
def test_malformed_bytes_raise_value_error(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        decode_outbox_data(garbage)
