"""Events set aside because no consumer can act on them: :class:`DeadLetter`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from ._event import Event

if TYPE_CHECKING:  # the Protocols import this module
    from .adapter import DeadLetterStore, EventStreamer

__all__ = ["DeadLetter", "replay_dead_letter"]


@attrs.frozen(kw_only=True)
class DeadLetter:
    """An event a consumer set aside, and why.

    A consumer that meets an event it can never act on (its headers are not an object of
    strings, its version is not a number or stays ahead of its record, its record cannot
    be read) logs it at ERROR, pauses the run where there is one to pause, stores it here
    (with a record store that keeps dead letters, :class:`~luno_wf.adapter.DeadLetterStore`)
    and acknowledges it, so the events behind it keep moving. Replay it with
    :func:`luno_wf.replay_dead_letter` once its cause is fixed.

    Attributes:
        id: The dead letter's own id.
        workflow_name: The workflow whose consumer set it aside.
        process_name: The consumer.
        topic: The topic it was received from.
        event: The event as received.
        reason: What was wrong with it.
        at: When it was set aside.

    """

    id: str
    workflow_name: str
    process_name: str
    topic: str
    event: Event
    reason: str
    at: datetime


async def replay_dead_letter(
    store: DeadLetterStore,
    streamer: EventStreamer,
    letter: DeadLetter,
    *,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Send a dead letter's event again on its topic, then forget the dead letter.

    Fix the cause first (the record, or the event's headers: pass ``headers`` to send
    corrected ones instead of the stored ones). The event goes to every consumer of its
    topic, like any other event; one that still cannot be acted on is set aside again.

    Args:
        store: The record store keeping the dead letter.
        streamer: The workflow's event streamer.
        letter: The dead letter, from ``store.list_dead_letters()``.
        headers: The headers to send instead of the event's own.

    """
    sender = await streamer.new_sender(letter.topic)
    try:
        event = letter.event
        await sender.send(event.foreign_id, event.type, dict(headers or event.headers))
    finally:
        await sender.close()
    await store.delete_dead_letter(letter.id)
