"""History retention: :func:`prune_history_periodically`."""

from __future__ import annotations

import logging
from datetime import timedelta

from ._clock import Clock, SystemClock
from .adapter import HistoryStore

__all__ = ["prune_history_periodically"]


async def prune_history_periodically(
    store: HistoryStore,
    *,
    keep: timedelta,
    every: timedelta = timedelta(hours=1),
    workflow_name: str | None = None,
    batch_size: int = 1000,
    clock: Clock | None = None,
    logger: logging.Logger | None = None,
) -> None:
    """Prune history older than ``keep`` now and then every ``every``, until cancelled.

    Each round calls ``store.prune_history(now - keep, ...)``, which never deletes a run's
    newest entry. Run it as a task of your application
    (``asyncio.create_task(prune_history_periodically(store, keep=timedelta(days=30)))``)
    and cancel it on shutdown. A failing round is logged (WARNING) and retried at the next
    one. Several processes may run it at once: pruning is safe to repeat.

    Args:
        store: A record store that keeps history.
        keep: How long entries are kept; positive.
        every: The time between rounds; positive.
        workflow_name: Only this workflow's entries (all workflows if ``None``).
        batch_size: Entries per pruning batch (see ``HistoryStore.prune_history``).
        clock: Whose time ``now`` is and how rounds wait (default: the system clock).
        logger: Where rounds are logged (default: the ``luno_wf`` logger).

    Raises:
        ValueError: ``keep`` or ``every`` is not positive.
        TypeError: ``store`` keeps no history.

    """
    if keep <= timedelta(0) or every <= timedelta(0):
        raise ValueError(f"keep and every must be positive, got keep={keep}, every={every}")
    if not isinstance(store, HistoryStore):
        raise TypeError(f"{type(store).__name__} keeps no history (not a HistoryStore)")
    clock = clock or SystemClock()
    log = logger or logging.getLogger("luno_wf")
    while True:
        now = clock.now()
        try:
            deleted = await store.prune_history(
                now - keep, workflow_name=workflow_name, batch_size=batch_size
            )
        except Exception as err:
            log.warning("pruning history failed (retried in %s): %s", every, err, exc_info=err)
        else:
            log.info("pruned %d history entries older than %s", deleted, now - keep)
        await clock.sleep_until(now + every)
