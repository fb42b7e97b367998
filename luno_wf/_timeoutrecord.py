"""A scheduled timeout of a run: :class:`TimeoutRecord`."""

from __future__ import annotations

from datetime import datetime

import attrs

__all__ = ["TimeoutRecord"]


@attrs.frozen(kw_only=True)
class TimeoutRecord:
    """A row of a :class:`~luno_wf.adapter.TimeoutStore`.

    Attributes:
        id: Store-assigned, increasing in creation order.
        completed: Set once the timeout has fired (or was found not to apply).
        expire_at: When the timeout becomes due.

    """

    id: int
    workflow_name: str
    foreign_id: str
    run_id: str
    status: int
    completed: bool
    expire_at: datetime
    created_at: datetime
    timer: int = 0
    version: int = 0
