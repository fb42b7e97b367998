"""Errors raised by the Kafka adapters.

They join luno_wf's error tree, so ``except WorkflowError`` catches them too::

    WorkflowError
    └── KafkaAdapterError
        ├── KafkaUnavailable(ConnectionError)
        └── TopicCreationFailed(RuntimeError)
"""

from __future__ import annotations

from luno_wf.errors import WorkflowError

__all__ = ["KafkaAdapterError", "KafkaUnavailable", "TopicCreationFailed"]


class KafkaAdapterError(WorkflowError):
    """Base class of the Kafka adapters' errors."""


class KafkaUnavailable(KafkaAdapterError, ConnectionError):
    """The brokers could not be reached (or kept failing) for longer than ``retry_timeout``."""


class TopicCreationFailed(KafkaAdapterError, RuntimeError):
    """The broker refused to create a topic (for a reason other than it already existing)."""
