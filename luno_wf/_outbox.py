"""The outbox row payload: luno's ``OutboxRecord`` protobuf message, encoded by hand.

Message (``internal/outboxpb/outbox.proto``): field 1 ``foreign_id`` int64 (unused),
field 2 ``type`` int32, field 3 ``headers`` map<string, string>, field 4 ``run_id`` string.
Keeping the bytes identical lets Go and Python services drain each other's outboxes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from datetime import datetime

import attrs

from ._event import Header
from ._naming import delete_topic, run_state_change_topic, topic
from ._record import Record
from ._runstate import RunState

__all__ = [
    "OutboxData",
    "decode_outbox_data",
    "encode_outbox_data",
    "make_outbox_event",
    "new_outbox_id",
    "outbox_data",
]

_RUN_STATE_TEXT = {state: str(int(state)) for state in RunState}
_TO_RUN_STATE_CHANGE = frozenset(
    {RunState.PAUSED, RunState.CANCELLED, RunState.DATA_DELETED, RunState.COMPLETED}
)


@attrs.frozen(kw_only=True)
class OutboxData:
    """The decoded payload of an outbox row: what the publisher sends, and where.

    ``created_at`` is when the row was written, if the lister knows it (for the outbox lag
    metric); it is not part of the payload and is left out of comparisons.
    """

    run_id: str
    type: int
    headers: dict[str, str]
    created_at: datetime | None = attrs.field(default=None, eq=False)

    @property
    def topic(self) -> str:
        """The topic the event goes to (its ``topic`` header)."""
        return self.headers.get(Header.TOPIC, "")


def new_uuid4() -> str:
    """A random (version 4) UUID as text, from the OS's random source."""
    value = int.from_bytes(os.urandom(16))
    value = (value & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC000 << 48) | (0x8000 << 48)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_topic(record: Record) -> str:
    """The topic of the event a stored record produces (spec §3.1)."""
    key = (record.workflow_name, record.run_state, record.status)
    found = _TOPICS.get(key)
    if found is None:
        if record.run_state == RunState.REQUESTED_DATA_DELETED:
            found = delete_topic(record.workflow_name)
        elif record.run_state in _TO_RUN_STATE_CHANGE:
            found = run_state_change_topic(record.workflow_name)
        else:
            found = topic(record.workflow_name, record.status)
        if len(_TOPICS) < 10_000:
            _TOPICS[key] = found
    return found


# Topic names are derived from (workflow, run state, status) on every write: memoised.
_TOPICS: dict[tuple[str, int, int], str] = {}


def outbox_data(record: Record, created_at: datetime | None = None) -> OutboxData:
    """What the outbox row of a record as it is being stored announces (not encoded).

    The headers are luno's, plus the run's W3C trace context when it has one.
    """
    headers = {
        "foreign_id": record.foreign_id,
        "workflow_name": record.workflow_name,
        "topic": event_topic(record),
        "run_id": record.run_id,
        "run_state": _RUN_STATE_TEXT[record.run_state],
        "record_version": str(record.meta.version),
    }
    meta = record.meta
    if meta.traceparent:
        headers["traceparent"] = meta.traceparent
        if meta.tracestate:
            headers["tracestate"] = meta.tracestate
    return OutboxData(
        run_id=record.run_id, type=record.status, headers=headers, created_at=created_at
    )


def make_outbox_event(record: Record) -> tuple[str, bytes]:
    """The outbox row id and payload for a record as it is being stored.

    Every :meth:`~luno_wf.adapter.RecordStore.store` writes exactly one such row, in the
    same transaction as the record.
    """
    decoded = outbox_data(record)
    data = encode_outbox_data(decoded.run_id, decoded.type, decoded.headers)
    # Remember the decoded form: a publisher in this process then skips decoding the row.
    if len(_RECENT) >= _RECENT_LIMIT:
        _RECENT.clear()
    _RECENT[data] = decoded
    return new_outbox_id(), data


def new_outbox_id() -> str:
    """A fresh outbox row id: ``outbox-id-<uuid4 of this process>-<counter>``.

    Unique across processes (a random prefix per process, renewed after ``fork``) and far
    cheaper than a UUID per row; luno's readers only need the ``outbox-id-`` prefix.
    """
    return f"{_ID_PREFIX[0]}{next(_ID_COUNTER):x}"


_ID_PREFIX = [""]
_ID_COUNTER = itertools.count()


def _new_id_prefix() -> None:
    global _ID_COUNTER
    _ID_PREFIX[0] = f"outbox-id-{new_uuid4()}-"
    _ID_COUNTER = itertools.count()


_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)


# Payloads made by make_outbox_event in this process, by their bytes (each is decoded once by
# the publisher, which removes it). Bounded: cleared when full, decoding then does the work.
_RECENT: dict[bytes, OutboxData] = {}
_RECENT_LIMIT = 50_000


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # proto int32/int64 negatives are ten-byte two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _len(n: int) -> bytes:
    return _SMALL[n] if n < 0x80 else _varint(n)


_ENTRIES: dict[tuple[str, str], bytes] = {}
_ENTRIES_LIMIT = 100_000


def _entry(key: str, value: str) -> bytes:
    """One encoded map entry; most recur (topic, run state, run id), so they are cached."""
    cached = _ENTRIES.get((key, value))
    if cached is not None:
        return cached
    k = key.encode()
    v = value.encode()
    body = (b"\x0a" + _len(len(k)) + k if k else b"") + (b"\x12" + _len(len(v)) + v if v else b"")
    entry = b"\x1a" + _len(len(body)) + body
    if len(_ENTRIES) >= _ENTRIES_LIMIT:
        _ENTRIES.clear()
    _ENTRIES[(key, value)] = entry
    return entry


def encode_outbox_data(run_id: str, type: int, headers: Mapping[str, str]) -> bytes:
    """Encode an ``OutboxRecord`` message (proto3: zero values are omitted)."""
    parts = [b"\x10" + _varint(int(type))] if type else []
    parts.extend([_entry(key, value) for key, value in headers.items()])
    if run_id:
        r = run_id.encode()
        parts.append(b"\x22" + _len(len(r)) + r)
    return b"".join(parts)


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


def _skip(data: bytes, pos: int, wire: int) -> int:
    if wire == 0:
        return _read_varint(data, pos)[1]
    if wire == 1:
        return pos + 8
    if wire == 5:
        return pos + 4
    if wire == 2:
        length, pos = _read_varint(data, pos)
        return pos + length
    raise ValueError(f"unsupported wire type {wire} in outbox record")


def _read_entry(data: bytes, pos: int, end: int) -> tuple[str, str]:
    key = value = ""
    while pos < end:
        tag = data[pos]
        if tag & 0x80:
            raise ValueError("unexpected field number in outbox header entry")
        pos += 1
        if tag == 0x0A or tag == 0x12:
            length = data[pos]
            if length < 0x80:
                pos += 1
            else:
                length, pos = _read_varint(data, pos)
            text = data[pos : pos + length].decode()
            pos += length
            if tag == 0x0A:
                key = text
            else:
                value = text
        else:
            pos = _skip(data, pos, tag & 7)
    if pos != end:
        raise ValueError("truncated header entry in outbox record")
    return key, value


def decode_outbox_data(data: bytes) -> OutboxData:
    """Decode an ``OutboxRecord`` message; raises ``ValueError`` on malformed bytes."""
    known = _RECENT.pop(data, None)
    if known is not None:
        return known  # popped: no one else holds it
    run_id = ""
    type_ = 0
    headers: dict[str, str] = {}
    pos = 0
    size = len(data)
    try:
        while pos < size:
            key, pos = _read_varint(data, pos)
            number, wire = key >> 3, key & 7
            if wire == 2:
                length = data[pos]
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = _read_varint(data, pos)
                end = pos + length
                if end > size:
                    raise ValueError("truncated field in outbox record")
                if number == 3:
                    k, v = _read_entry(data, pos, end)
                    headers[k] = v
                elif number == 4:
                    run_id = data[pos:end].decode()
                pos = end
            elif wire == 0 and number == 2:
                value, pos = _read_varint(data, pos)
                type_ = value - (1 << 64) if value >= 1 << 63 else value
            else:
                pos = _skip(data, pos, wire)
    except IndexError:
        raise ValueError("truncated outbox record") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"outbox record holds invalid UTF-8: {err}") from None
    if pos != size:
        raise ValueError("truncated outbox record")
    return OutboxData(run_id=run_id, type=type_, headers=headers)
