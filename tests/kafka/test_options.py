"""Constructor checks: bad options fail at once, with errors that say what to do."""

from __future__ import annotations

from datetime import timedelta

import pytest
from luno_wf_kafka import KafkaStreamer, KafkaUnavailable, TopicCreationFailed
from luno_wf_kafka._config import ClientConfig

from luno_wf.errors import WorkflowError


def test_client_options_must_suit_every_client() -> None:
    with pytest.raises(TypeError, match=r"linger_ms.*producer_options"):
        KafkaStreamer("127.0.0.1:9092", linger_ms=5)
    KafkaStreamer("127.0.0.1:9092", client_id="svc", request_timeout_ms=5000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"consumer_options": {"enable_auto_commit": True}}, "enable_auto_commit"),
        ({"consumer_options": {"group_id": "g"}}, "group_id"),
        ({"consumer_options": {"auto_offset_reset": "none"}}, "auto_offset_reset"),
        ({"producer_options": {"value_serializer": str.encode}}, "value_serializer"),
        ({"partitions": 0}, "partitions"),
        ({"partitions": 1 << 15}, "partitions"),
        ({"replication_factor": 0}, "replication_factor"),
        ({"commit_interval": timedelta(seconds=-1)}, "commit_interval"),
        ({"retry_timeout": timedelta(0)}, "retry_timeout"),
    ],
)
def test_reserved_or_out_of_range_options_are_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        KafkaStreamer("127.0.0.1:9092", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("servers", ["", "  ", []])
def test_servers_are_required(servers: str | list[str]) -> None:
    with pytest.raises(ValueError, match="bootstrap_servers"):
        KafkaStreamer(servers)


def test_producer_acks_default_to_all_and_can_be_changed() -> None:
    def config(**producer: object) -> ClientConfig:
        return ClientConfig.build(
            "b:9092",
            client_options={},
            producer_options=producer,
            consumer_options=None,
            retry_timeout=timedelta(seconds=1),
        )

    assert config().producer["acks"] == "all"
    assert config(acks=1).producer["acks"] == 1


def test_errors_join_the_workflow_error_tree() -> None:
    assert issubclass(KafkaUnavailable, WorkflowError)
    assert issubclass(KafkaUnavailable, ConnectionError)
    assert issubclass(TopicCreationFailed, RuntimeError)
