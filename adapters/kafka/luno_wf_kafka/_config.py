"""Client settings shared by the streamer and the connector, and the clients made from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import attrs
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["ClientConfig", "Servers"]

Servers = str | Sequence[str]
"""Bootstrap servers: ``"host:port"``, ``"h1:p1,h2:p2"`` or a sequence of ``"host:port"``."""

# Options every aiokafka client (admin, producer, consumer) accepts: connection and security.
COMMON_OPTIONS = frozenset(
    {
        "client_id",
        "request_timeout_ms",
        "connections_max_idle_ms",
        "retry_backoff_ms",
        "metadata_max_age_ms",
        "security_protocol",
        "ssl_context",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
    }
)

# Set by the adapters themselves: the adapters' guarantees rest on them.
_RESERVED_CONSUMER = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "auto_offset_reset",
        "key_deserializer",
        "value_deserializer",
        "loop",
    }
)
_RESERVED_PRODUCER = frozenset(
    {"bootstrap_servers", "key_serializer", "value_serializer", "transactional_id", "loop"}
)


def _servers(bootstrap_servers: Servers) -> str | list[str]:
    if isinstance(bootstrap_servers, str):
        if not bootstrap_servers.strip():
            raise ValueError("bootstrap_servers is empty: give 'host:port' of at least one broker")
        return bootstrap_servers
    servers = [str(server) for server in bootstrap_servers]
    if not servers:
        raise ValueError("bootstrap_servers is empty: give 'host:port' of at least one broker")
    return servers


def _checked(
    options: Mapping[str, Any] | None, reserved: frozenset[str], name: str
) -> dict[str, Any]:
    checked = dict(options or {})
    clash = sorted(set(checked) & reserved)
    if clash:
        raise ValueError(f"{name} may not set {', '.join(clash)}: the adapter sets them itself")
    return checked


@attrs.frozen(kw_only=True)
class ClientConfig:
    """How to reach the brokers and how to configure each kind of client."""

    servers: str | list[str]
    common: dict[str, Any]
    producer: dict[str, Any]
    consumer: dict[str, Any]
    retry_timeout: timedelta

    @classmethod
    def build(
        cls,
        bootstrap_servers: Servers,
        *,
        client_options: Mapping[str, Any],
        producer_options: Mapping[str, Any] | None,
        consumer_options: Mapping[str, Any] | None,
        retry_timeout: timedelta,
    ) -> ClientConfig:
        """Validate the user's options (no I/O).

        Raises:
            TypeError: A client option is not one every aiokafka client accepts.
            ValueError: An option the adapter sets itself was given, or no servers.

        """
        unknown = sorted(set(client_options) - COMMON_OPTIONS)
        if unknown:
            raise TypeError(
                f"unexpected client option(s) {', '.join(unknown)}: keyword options are "
                f"passed to every client, so only {', '.join(sorted(COMMON_OPTIONS))} are "
                "accepted there; put producer settings in producer_options and consumer "
                "settings in consumer_options"
            )
        if retry_timeout <= timedelta(0):
            raise ValueError(f"retry_timeout must be positive, got {retry_timeout!r}")
        producer = {"acks": "all"}
        producer.update(_checked(producer_options, _RESERVED_PRODUCER, "producer_options"))
        return cls(
            servers=_servers(bootstrap_servers),
            common=dict(client_options),
            producer=producer,
            consumer=_checked(consumer_options, _RESERVED_CONSUMER, "consumer_options"),
            retry_timeout=retry_timeout,
        )

    def admin(self) -> Any:
        """A new, unstarted admin client."""
        return AIOKafkaAdminClient(bootstrap_servers=self.servers, **self.common)

    def make_producer(self) -> Any:
        """A new, unstarted producer (call inside a running loop)."""
        return AIOKafkaProducer(bootstrap_servers=self.servers, **self.common, **self.producer)

    def make_consumer(
        self, group: str, *, from_latest: bool, max_wait: timedelta | None = None
    ) -> Any:
        """A new, unstarted consumer in ``group`` that never commits by itself."""
        options = dict(self.consumer)
        if max_wait is not None and "fetch_max_wait_ms" not in options:
            options["fetch_max_wait_ms"] = max(1, int(max_wait.total_seconds() * 1000))
        return AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="latest" if from_latest else "earliest",
            **self.common,
            **options,
        )
