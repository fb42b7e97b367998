"""A run is one trace across two OS processes when its events travel through Kafka.

As ``tests/postgres/test_tracing.py``, with the events on the Tansu broker: the step
spans in worker A find the trace context in the Kafka message headers.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from luno_wf import Header, topic
from tests.fixtures.kafka import make_streamer
from tests.postgres.test_tracing import (
    RUNS,
    check_one_trace_per_run,
    read_spans,
    run_two_workers,
)

from ._helpers import recv_all

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_a_run_is_one_trace_across_two_processes_on_kafka(
    kafka_bootstrap: str,
    kafka_consumer_options: dict[str, Any],
    postgres_dsn: str,
    pg_pool: AsyncConnectionPool[Any],
    pg_schema: str,
    tmp_path: Path,
) -> None:
    workflow = f"kafka-traced-{uuid.uuid4().hex[:8]}"
    await run_two_workers(
        pg_pool,
        postgres_dsn,
        pg_schema,
        tmp_path,
        "--kafka",
        kafka_bootstrap,
        workflow=workflow,
    )
    check_one_trace_per_run(
        read_spans(tmp_path / "b.jsonl"), read_spans(tmp_path / "a.jsonl"), workflow
    )

    # The trigger's context is in the Kafka message headers of the run's first event.
    triggers = {
        span["attributes"]["luno_wf.run_id"]: span for span in read_spans(tmp_path / "b.jsonl")
    }
    async with make_streamer(kafka_bootstrap, kafka_consumer_options) as streamer:
        receiver = await streamer.new_receiver(topic(workflow, 1), "trace-check")
        try:
            events = await recv_all(receiver, RUNS)
        finally:
            await receiver.close()
    for event in events:
        trigger = triggers[event.foreign_id]
        expected = f"00-{trigger['trace_id']}-{trigger['span_id']}-"
        assert event.headers[Header.TRACEPARENT].startswith(expected)
