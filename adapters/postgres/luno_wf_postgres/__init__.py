"""PostgreSQL adapters for luno_wf: the whole framework on PostgreSQL alone.

Create the schema once (idempotent), then build a workflow on the adapters::

    pool = AsyncConnectionPool(dsn, open=False)
    await pool.open()
    await migrate(pool)
    wf = builder.build(
        PostgresStreamer(pool),
        PostgresRecordStore(pool),
        PostgresRoleScheduler(dsn),
        timeout_store=PostgresTimeoutStore(pool),
    )
"""

from __future__ import annotations

from ._schema import DEFAULT_SCHEMA as DEFAULT_SCHEMA
from ._schema import migrate as migrate
from ._schema import migration_statements as migration_statements
from .recordstore import PostgresRecordStore as PostgresRecordStore
from .rolescheduler import PostgresRoleScheduler as PostgresRoleScheduler
from .streamer import PostgresReceiver as PostgresReceiver
from .streamer import PostgresSender as PostgresSender
from .streamer import PostgresStreamer as PostgresStreamer
from .timeoutstore import PostgresTimeoutStore as PostgresTimeoutStore

__all__ = [
    "DEFAULT_SCHEMA",
    "migrate",
    "migration_statements",
    "PostgresReceiver",
    "PostgresRecordStore",
    "PostgresRoleScheduler",
    "PostgresSender",
    "PostgresStreamer",
    "PostgresTimeoutStore",
]
