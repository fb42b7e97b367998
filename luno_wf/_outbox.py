"""The outbox row payload: luno's ``OutboxRecord`` protobuf message, encoded by hand.

Message (``internal/outboxpb/outbox.proto``): field 1 ``foreign_id`` int64 (unused),
field 2 ``type`` int32, field 3 ``headers`` map<string, string>, field 4 ``run_id`` string.
Keeping the bytes identical lets Go and Python services drain each other's outboxes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import attrs

from ._event import Header
from ._naming import delete_topic, run_state_change_topic, topic
from ._record import Record
from ._runstate import RunState

__all__ = ["OutboxData", "decode_outbox_data", "encode_outbox_data", "make_outbox_event"]

_TO_RUN_STATE_CHANGE = frozenset(
    {RunState.PAUSED, RunState.CANCELLED, RunState.DATA_DELETED, RunState.COMPLETED}
)


@attrs.frozen(kw_only=True)
class OutboxData:
    """The decoded payload of an outbox row: what the publisher sends, and where."""

    run_id: str
    type: int
    headers: dict[str, str]

    @property
    def topic(self) -> str:
        """The topic the event goes to (its ``topic`` header)."""
        return self.headers.get(Header.TOPIC, "")


def event_topic(record: Record) -> str:
    """The topic of the event a stored record produces (spec §3.1)."""
    if record.run_state == RunState.REQUESTED_DATA_DELETED:
        return delete_topic(record.workflow_name)
    if record.run_state in _TO_RUN_STATE_CHANGE:
        return run_state_change_topic(record.workflow_name)
    return topic(record.workflow_name, record.status)


def make_outbox_event(record: Record) -> tuple[str, bytes]:
    """The outbox row id and payload for a record as it is being stored.

    Every :meth:`~luno_wf.adapter.RecordStore.store` writes exactly one such row, in the
    same transaction as the record.
    """
    headers = {
        Header.FOREIGN_ID.value: record.foreign_id,
        Header.WORKFLOW_NAME.value: record.workflow_name,
        Header.TOPIC.value: event_topic(record),
        Header.RUN_ID.value: record.run_id,
        Header.RUN_STATE.value: str(int(record.run_state)),
        Header.RECORD_VERSION.value: str(record.meta.version),
    }
    return f"outbox-id-{uuid.uuid4()}", encode_outbox_data(record.run_id, record.status, headers)


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # proto int32/int64 negatives are ten-byte two's complement
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _length_delimited(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def encode_outbox_data(run_id: str, type: int, headers: Mapping[str, str]) -> bytes:
    """Encode an ``OutboxRecord`` message (proto3: zero values are omitted)."""
    out = bytearray()
    if type:
        out += b"\x10" + _varint(int(type))
    for key, value in headers.items():
        entry = b""
        if key:
            entry += _length_delimited(0x0A, key.encode())
        if value:
            entry += _length_delimited(0x12, value.encode())
        out += _length_delimited(0x1A, entry)
    if run_id:
        out += _length_delimited(0x22, run_id.encode())
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint in outbox record")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long in outbox record")


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            fields.append((number, wire, value))
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field in outbox record")
            fields.append((number, wire, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire} in outbox record")
    return fields


def decode_outbox_data(data: bytes) -> OutboxData:
    """Decode an ``OutboxRecord`` message; raises ``ValueError`` on malformed bytes."""
    run_id = ""
    type_ = 0
    headers: dict[str, str] = {}
    for number, wire, value in _fields(data):
        if number == 2 and wire == 0 and isinstance(value, int):
            type_ = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 3 and wire == 2 and isinstance(value, bytes):
            key = val = ""
            for sub_number, sub_wire, sub_value in _fields(value):
                if sub_wire == 2 and isinstance(sub_value, bytes):
                    if sub_number == 1:
                        key = sub_value.decode()
                    elif sub_number == 2:
                        val = sub_value.decode()
            headers[key] = val
        elif number == 4 and wire == 2 and isinstance(value, bytes):
            run_id = value.decode()
    return OutboxData(run_id=run_id, type=type_, headers=headers)
