"""Looking a run up by its id, with an error that says when the id is a foreign id."""

from __future__ import annotations

from ._record import Record
from .adapter import RecordStore
from .errors import RecordNotFound

__all__ = ["lookup_own_run", "lookup_run"]


async def lookup_run(store: RecordStore, workflow_name: str, run_id: str) -> Record:
    """The record of run ``run_id``.

    Run ids and foreign ids are both strings and easy to swap; when ``run_id`` is not a run id
    but a foreign id of the workflow, the error says so (and names its latest run).

    Raises:
        RecordNotFound: No run has that id.

    """
    try:
        return await store.lookup(run_id)
    except RecordNotFound:
        pass
    try:
        latest = await store.latest(workflow_name, run_id)
    except RecordNotFound:
        raise RecordNotFound(
            f"no run has id {run_id!r}", workflow_name=workflow_name, run_id=run_id
        ) from None
    raise RecordNotFound(
        f"no run has id {run_id!r}, but it is a foreign id of this workflow (its latest run is "
        f"{latest.run_id!r}): pass the run id (trigger returns it), not the foreign id",
        workflow_name=workflow_name,
        run_id=run_id,
    )


async def lookup_own_run(store: RecordStore, workflow_name: str, run_id: str) -> Record:
    """As :func:`lookup_run`, for a run of workflow ``workflow_name`` only.

    Raises:
        RecordNotFound: No run has that id, or it is a run of another workflow.

    """
    record = await lookup_run(store, workflow_name, run_id)
    if record.workflow_name != workflow_name:
        raise RecordNotFound(
            f"run belongs to workflow {record.workflow_name!r}",
            workflow_name=workflow_name,
            run_id=run_id,
        )
    return record
