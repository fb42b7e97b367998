"""The data-deletion consumer: RequestedDataDeleted -> DataDeleted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .._event import Event
from .._metrics import SkipReason
from .._naming import delete_topic, make_role
from .._runstate import RunState
from ..errors import RecordNotFound, StaleRecord
from ._loop import ProcessSpec, consumer_process

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["DELETED_PLACEHOLDER", "process"]

DELETED_PLACEHOLDER = b'{"result":"deleted"}'


async def replacement(wf: Workflow[Any, Any], data: bytes) -> bytes:
    """What a deleted run keeps instead of its object.

    ``custom_delete`` decides if given; otherwise the object type's empty value when it can
    be made without arguments (so the run still decodes), else luno's placeholder.
    """
    if wf.custom_delete is not None:
        return wf.codec.encode(await wf.custom_delete(wf.codec.decode(data)))
    try:
        return wf.codec.encode(wf.object_type())
    except Exception:
        return DELETED_PLACEHOLDER


def process(wf: Workflow[Any, Any]) -> ProcessSpec:
    """The consumer that replaces the data of runs whose deletion was requested."""
    role = make_role(wf.name, "delete-consumer")
    name = "delete-consumer"
    opts = wf.defaults
    probe = wf.process_metrics(name)

    async def handle(event: Event) -> None:
        try:
            record = await wf.store.lookup(event.foreign_id)
        except RecordNotFound:
            wf.logger.error("delete: run %s not found; skipping", event.foreign_id)
            if probe is not None:
                probe.skip(SkipReason.RECORD_NOT_FOUND)
            return
        if record.run_state != RunState.REQUESTED_DATA_DELETED:
            return  # already deleted, or the request was for an older version
        updated = attrs.evolve(
            record,
            run_state=RunState.DATA_DELETED,
            object=await replacement(wf, record.object),
            updated_at=wf.clock.now(),
            meta=attrs.evolve(record.meta, version=record.meta.version + 1),
        )
        try:
            await wf.write(updated, record.run_state)
        except StaleRecord:
            return  # written meanwhile; that write's event is handled on its own

    return consumer_process(
        wf,
        name=name,
        role=role,
        topic=delete_topic(wf.name),
        handle=handle,
        polling=opts.polling_frequency,
        backoff=opts.err_backoff,
        lag_alert=opts.lag_alert,
    )
