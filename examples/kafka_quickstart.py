"""The quickstart with its events on Kafka.

Records and roles stay in memory here (use luno_wf_postgres for those in production); every
event between steps goes through Kafka topics. Run it against a broker:

    python examples/kafka_quickstart.py localhost:9092
"""

from __future__ import annotations

import asyncio
import enum
import sys
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
from luno_wf_kafka import KafkaStreamer

from luno_wf import Builder, Run, TypedRecord
from luno_wf.memory import MemRecordStore, MemRoleScheduler


class TaskStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    PROCESSED = 2
    COMPLETED = 3


@attrs.define
class Task:
    id: str
    name: str = ""


async def process(r: Run[Task, TaskStatus]) -> TaskStatus:
    r.object.name = r.object.name.upper()
    return TaskStatus.PROCESSED


async def finish(r: Run[Task, TaskStatus]) -> TaskStatus:
    return TaskStatus.COMPLETED


async def main(
    bootstrap_servers: str, consumer_options: Mapping[str, Any] | None = None
) -> TypedRecord[Task, TaskStatus]:
    # One streamer per process: it owns the producer; each receiver is a consumer group.
    async with KafkaStreamer(
        bootstrap_servers,
        partitions=4,  # of each topic it creates ("task-processor-1", ...)
        replication_factor=1,  # 3 on a production cluster
        consumer_options=consumer_options,
    ) as streamer:
        b = Builder(f"task-processor-{uuid.uuid4().hex[:6]}", Task, TaskStatus)
        b.add_step(TaskStatus.CREATED, process, TaskStatus.PROCESSED)
        b.add_step(TaskStatus.PROCESSED, finish, TaskStatus.COMPLETED, parallel_count=2)
        wf = b.build(streamer, MemRecordStore(), MemRoleScheduler())
        async with wf:
            run_id = await wf.trigger("task-1", initial_value=Task(id="task-1", name="invoice"))
            run = await wf.await_status("task-1", run_id, TaskStatus.COMPLETED)
            print(f"run {run_id[:8]} reached {run.status.name} via Kafka: {run.object}")
            return run


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "localhost:9092"))
