"""The data-deletion consumer: RequestedDataDeleted -> DataDeleted."""

from __future__ import annotations

from typing import Any

import attrs

from .._actor import DELETE
from .._engine import Engine
from .._event import Event
from .._metrics import SkipReason
from .._naming import delete_topic, make_role
from .._runstate import RunState
from .._tracing import Work
from ..errors import RecordNotFound, StaleRecord
from ._consumer import consumer_process, handling, intake_of
from ._process import LiveProcess

__all__ = ["DELETED_PLACEHOLDER", "DeleteHandler", "process"]

DELETED_PLACEHOLDER = b'{"result":"deleted"}'
NAME = "delete-consumer"


def process(engine: Engine[Any, Any]) -> LiveProcess:
    """The consumer that replaces the data of runs whose deletion was requested."""
    opts = engine.defaults
    return consumer_process(
        engine,
        name=NAME,
        role=make_role(engine.name, NAME),
        topic=delete_topic(engine.name),
        polling=opts.polling_frequency,
        backoff=opts.err_backoff,
        session=handling(
            DeleteHandler(engine),
            intake_of(engine, NAME, topic=delete_topic(engine.name), lag_alert=opts.lag_alert),
        ),
    )


class DeleteHandler:
    """Replaces the object of a run whose data deletion was requested, and marks it deleted."""

    def __init__(self, engine: Engine[Any, Any]) -> None:
        self._engine = engine
        self._probe = engine.probe(NAME)

    async def replacement(self, data: bytes) -> bytes:
        """What a deleted run keeps instead of its object.

        ``custom_delete`` decides if given; otherwise the object type's empty value when it
        can be made without arguments (so the run still decodes), else luno's placeholder.
        """
        engine = self._engine
        custom = engine.settings.custom_delete
        if custom is not None:
            return engine.codec.encode(await custom(engine.codec.decode(data)))
        try:
            return engine.codec.encode(engine.definition.object_type())
        except Exception:
            return DELETED_PLACEHOLDER

    async def __call__(self, event: Event) -> None:
        engine = self._engine
        try:
            record = await engine.store.lookup(event.foreign_id)
        except RecordNotFound:
            engine.logger.error("delete: run %s not found; skipping", event.foreign_id)
            self._probe.skip(SkipReason.RECORD_NOT_FOUND)
            return
        if record.run_state != RunState.REQUESTED_DATA_DELETED:
            return  # already deleted, or the request was for an older version
        with engine.tracing.span(Work.DELETE, record, headers=event.headers):
            updated = attrs.evolve(
                record,
                run_state=RunState.DATA_DELETED,
                object=await self.replacement(record.object),
                updated_at=engine.clock.now(),
                meta=attrs.evolve(
                    record.meta, version=record.meta.version + 1, actor=DELETE, error=""
                ),
            )
            try:
                await engine.write(updated, record.run_state)
            except StaleRecord:
                return  # written meanwhile; that write's event is handled on its own
