"""Encoding of users' objects: one private cattrs converter, JSON on the wire."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any, TypeVar

import cattrs
import orjson
from cattrs.preconf.json import make_converter

__all__ = ["Codec", "default_converter"]

T = TypeVar("T")


def default_converter() -> cattrs.Converter:
    """A fresh converter: cattrs' JSON preset plus aware-UTC datetimes and IntEnums by value.

    Pass your own to ``Builder.build(converter=...)`` to change how objects are encoded.
    """
    converter = make_converter()

    def unstructure_datetime(value: datetime) -> str:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} in a workflow object; use aware UTC")
        return value.astimezone(UTC).isoformat()

    def structure_datetime(value: Any, _: type) -> datetime:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    converter.register_unstructure_hook(datetime, unstructure_datetime)
    converter.register_structure_hook(datetime, structure_datetime)
    converter.register_unstructure_hook(enum.IntEnum, int)
    return converter


class Codec:
    """Encodes and decodes one workflow's objects to and from JSON bytes.

    The converter turns objects into JSON-ready data; orjson writes and reads the text
    (an order of magnitude faster than the standard library, on every step). Values orjson
    refuses (integers beyond 64 bits) fall back to the standard library.
    """

    __slots__ = ("_converter", "_type")

    def __init__(self, object_type: type[Any], converter: cattrs.Converter | None = None) -> None:
        self._converter = converter or default_converter()
        self._type = object_type

    @property
    def converter(self) -> cattrs.Converter:
        """The cattrs converter in use."""
        return self._converter

    def encode(self, value: Any) -> bytes:
        """Encode an object of the workflow's type."""
        data = self._converter.unstructure(value, self._type)
        try:
            return orjson.dumps(data)
        except orjson.JSONEncodeError:
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        """Decode bytes into an object of the workflow's type."""
        return self._converter.structure(orjson.loads(data), self._type)
