"""Consumer processes: a live process whose body consumes one topic."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .._engine import Engine
from .._event import Event
from .._options import ExponentialBackoff
from ..adapter import EventReceiver, ShardedStreamer
from ._loop import Handler, Intake, Session, consume, receiver_body
from ._poison import SetAside
from ._process import LiveProcess, Progress

__all__ = ["consumer_process", "handling", "intake_of"]


def intake_of(
    engine: Engine[Any, Any],
    process_name: str,
    *,
    topic: str,
    lag: timedelta = timedelta(0),
    lag_alert: timedelta = timedelta(0),
    keep: Callable[[Any], bool] | None = None,
) -> Intake:
    """The intake of a process of ``engine`` consuming ``topic``."""
    return Intake(
        process_name=process_name,
        clock=engine.clock,
        logger=engine.logger,
        probe=engine.probe(process_name),
        activity=engine.states.activity(process_name),
        set_aside=SetAside(engine, process_name, topic),
        lag=lag,
        lag_alert=lag_alert,
        keep=keep,
    )


def handling(handler: Handler[Event], intake: Intake) -> Session:
    """A session handling one event at a time with ``handler``."""

    async def session(receiver: EventReceiver, progress: Progress) -> None:
        await consume(receiver, handler, intake, progress)

    return session


def consumer_process(
    engine: Engine[Any, Any],
    *,
    name: str,
    role: str,
    topic: str,
    polling: timedelta,
    backoff: timedelta | ExponentialBackoff,
    session: Session,
    shard: tuple[int, int] | None = None,
) -> LiveProcess:
    """A process that consumes ``topic`` under ``role`` with ``session``.

    Each time it takes its role it opens a receiver named after the role (so it resumes at
    the last acked event, and receivers of the same role share the work), runs the session
    until an error or cancellation, and closes the receiver. A process of one ``shard``
    (``(shard, total)``) opens a receiver of that shard if the streamer has them
    (:class:`~luno_wf.adapter.ShardedStreamer`); its session keeps only its shard's events
    either way.
    """
    streamer = engine.streamer

    async def open_receiver() -> EventReceiver:
        if shard is not None and isinstance(streamer, ShardedStreamer):
            return await streamer.new_shard_receiver(
                topic, role, shard=shard[0], total=shard[1], poll_frequency=polling
            )
        return await streamer.new_receiver(topic, role, poll_frequency=polling)

    return LiveProcess(engine, name, role, receiver_body(open_receiver, session), backoff)
