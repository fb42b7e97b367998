"""Kafka adapters for luno_wf, on aiokafka.

* :class:`KafkaStreamer`: the event streamer. One Kafka topic per luno_wf topic, message
  key = run id, one consumer group per receiver name, acks committed as contiguous offset
  prefixes (un-acked events are redelivered).
* :class:`KafkaConnector`: feeds any Kafka topic into a workflow's connector.
"""

from __future__ import annotations

from .connector import KafkaConnector as KafkaConnector
from .connector import KafkaConnectorConsumer as KafkaConnectorConsumer
from .connector import KafkaMessage as KafkaMessage
from .connector import Translate as Translate
from .connector import default_translate as default_translate
from .errors import KafkaAdapterError as KafkaAdapterError
from .errors import KafkaUnavailable as KafkaUnavailable
from .errors import TopicCreationFailed as TopicCreationFailed
from .streamer import KafkaReceiver as KafkaReceiver
from .streamer import KafkaSender as KafkaSender
from .streamer import KafkaStreamer as KafkaStreamer
from .streamer import event_id as event_id

__all__ = [
    "default_translate",
    "event_id",
    "KafkaAdapterError",
    "KafkaConnector",
    "KafkaConnectorConsumer",
    "KafkaMessage",
    "KafkaReceiver",
    "KafkaSender",
    "KafkaStreamer",
    "KafkaUnavailable",
    "TopicCreationFailed",
    "Translate",
]
