"""Dead letters in PostgreSQL: the events consumers set aside, in ``dead_letters``."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import orjson
from psycopg.types.json import Jsonb

from luno_wf import DeadLetter, Event

from ._pool import AutocommitConnections
from ._schema import Statements

__all__ = ["DEAD_LETTER_TEMPLATES", "DeadLetters"]

_COLUMNS = (
    "id, workflow_name, process_name, topic, event_id, foreign_id, type, headers::text, "
    "published_at, reason, at"
)

DEAD_LETTER_TEMPLATES = {
    "set_aside": f"""
INSERT INTO {{s}}.dead_letters ({_COLUMNS.replace("::text", "")})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
    "dead_letters": f"SELECT {_COLUMNS} FROM {{s}}.dead_letters ORDER BY seq LIMIT %s",
    "dead_letters_of": f"""
SELECT {_COLUMNS} FROM {{s}}.dead_letters WHERE workflow_name = %s ORDER BY seq LIMIT %s""",
    "delete_dead_letter": "DELETE FROM {s}.dead_letters WHERE id = %s",
}


def _letter(row: Sequence[Any]) -> DeadLetter:
    id, workflow, process, topic, event_id, foreign_id, type_, headers, published, reason, at = row
    value = orjson.loads(headers)
    return DeadLetter(
        id=id,
        workflow_name=workflow,
        process_name=process,
        topic=topic,
        event=Event(
            id=int(event_id),
            foreign_id=foreign_id,
            type=int(type_),
            headers=value if isinstance(value, dict) else {},
            created_at=published.astimezone(UTC),
        ),
        reason=reason,
        at=at.astimezone(UTC),
    )


class DeadLetters:
    """The :class:`~luno_wf.adapter.DeadLetterStore` methods of the record store."""

    _conns: AutocommitConnections
    _sql: Statements

    async def set_aside(self, letter: DeadLetter) -> None:
        """Keep ``letter`` in ``dead_letters``."""
        event = letter.event
        params = (
            letter.id,
            letter.workflow_name,
            letter.process_name,
            letter.topic,
            event.id,
            event.foreign_id,
            event.type,
            Jsonb(event.headers),
            event.created_at,
            letter.reason,
            letter.at,
        )
        async with self._conns.connection() as conn:
            await conn.execute(self._sql.get("set_aside", conn), params)

    async def list_dead_letters(
        self, workflow_name: str | None = None, *, limit: int = 100
    ) -> builtins.list[DeadLetter]:
        """The dead letters (of one workflow, or all), oldest first."""
        async with self._conns.connection() as conn:
            if workflow_name is None:
                cur = await conn.execute(self._sql.get("dead_letters", conn), (limit,))
            else:
                query = self._sql.get("dead_letters_of", conn)
                cur = await conn.execute(query, (workflow_name, limit))
            rows = await cur.fetchall()
        return [_letter(row) for row in rows]

    async def delete_dead_letter(self, id: str) -> None:
        """Forget a dead letter; an unknown id is not an error."""
        async with self._conns.connection() as conn:
            await conn.execute(self._sql.get("delete_dead_letter", conn), (id,))
