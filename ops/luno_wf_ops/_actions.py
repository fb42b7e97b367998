"""An operator's action on one run: one compare-and-set write through the run-state controls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import attrs

from luno_wf import Record, RecordStore, RunState
from luno_wf._run import RunStateController
from luno_wf.errors import StaleRecord

from ._model import Verb

__all__ = ["AUDIT", "actor_of", "move"]

AUDIT = logging.getLogger("luno_wf_ops.audit")
"""Every action is logged here (INFO): who, what, which run, why."""

_ATTEMPTS = 3


def actor_of(identity: str) -> str:
    """The actor an operator's writes carry: ``"operator:alice"``."""
    name = identity.strip()
    if not name:
        raise ValueError("an action needs the operator's identity (an empty name was given)")
    return f"operator:{name}"


def _with_actor(record: Record, actor: str) -> Record:
    """``record`` naming ``actor`` as the writer of its next write (kept in its history)."""
    return attrs.evolve(record, meta=attrs.evolve(record.meta, actor=actor))


async def move(
    store: RecordStore,
    run_id: str,
    verb: Verb,
    *,
    reason: str,
    actor: str,
    now: Callable[[], datetime],
) -> Record:
    """Apply ``verb`` to run ``run_id``: one compare-and-set write of its record.

    As ``Workflow.pause()`` and the others do, through the same
    :class:`~luno_wf._run.RunStateController`: the move must be in the run-state table
    (a run not yet picked up counts as running), and the record is stored with its version
    bumped by one, the reason, and (where the record keeps it) the actor. A write that
    loses a race with the engine (``StaleRecord``) is retried on the fresh record, twice.

    Raises:
        RecordNotFound: No run has that id.
        InvalidRunStateTransition: The run's state does not allow the move
            (``UnableToPause``, ...).
        StaleRecord: The run kept changing under the action.

    """

    async def write(record: Record, previous: RunState) -> None:
        await store.store(record)

    for attempt in range(_ATTEMPTS):
        record = await store.lookup(run_id)
        if record.run_state == RunState.INITIATED:
            record = attrs.evolve(record, run_state=RunState.RUNNING)
        controller = RunStateController(_with_actor(record, actor), write, now)
        try:
            stored = await controller.transition(verb.target, reason)
        except StaleRecord:
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        AUDIT.info(
            "%s: run %s (%s/%s) %s, version %d: %s",
            actor,
            run_id,
            stored.workflow_name,
            stored.foreign_id,
            verb.past,
            stored.meta.version,
            reason or "(no reason given)",
        )
        return stored
    raise AssertionError("unreachable")
