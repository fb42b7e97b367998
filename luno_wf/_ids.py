"""What a foreign id may be: one rule, checked by the API and by every record store."""

from __future__ import annotations

from .errors import InvalidForeignID

__all__ = ["MAX_FOREIGN_ID_LENGTH", "check_foreign_id"]

MAX_FOREIGN_ID_LENGTH = 255
"""The longest foreign id, in characters (luno's SQL schema keeps ``varchar(255)``)."""


def check_foreign_id(foreign_id: object) -> str:
    """``foreign_id`` if every store can keep it, else raise :class:`InvalidForeignID`.

    A foreign id is a string of 1 to :data:`MAX_FOREIGN_ID_LENGTH` characters that is not
    only whitespace and holds no NUL character (which PostgreSQL text cannot store).
    """
    if not isinstance(foreign_id, str):
        raise InvalidForeignID(f"foreign_id must be a string, got {foreign_id!r}")
    if not foreign_id.strip():
        raise InvalidForeignID(
            f"foreign_id must be a non-empty string that is not only whitespace, got {foreign_id!r}"
        )
    if len(foreign_id) > MAX_FOREIGN_ID_LENGTH:
        raise InvalidForeignID(
            f"foreign_id is {len(foreign_id)} characters long; the limit is "
            f"{MAX_FOREIGN_ID_LENGTH}: {foreign_id[:40]!r}..."
        )
    if "\x00" in foreign_id:
        raise InvalidForeignID(f"foreign_id must not contain a NUL character: {foreign_id!r}")
    return foreign_id
