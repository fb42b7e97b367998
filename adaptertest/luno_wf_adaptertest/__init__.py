"""luno_wf_adaptertest: the conformance suite for luno_wf adapters.

Subclass a contract class and override its one factory fixture::

    from luno_wf_adaptertest import RecordStoreContract, RecordStoreFactory, factory_of

    class TestMyRecordStore(RecordStoreContract):
        @pytest.fixture
        def make_store(self) -> RecordStoreFactory:
            return factory_of(MyRecordStore)

Contracts: :class:`RecordStoreContract`, :class:`EventStreamerContract`,
:class:`RoleSchedulerContract`, :class:`TimeoutStoreContract`, :class:`ConnectorContract`,
for a record store that writes events to a streamer itself,
:class:`DirectEventsContract`, and for a streamer with shard receivers,
:class:`ShardedStreamerContract`.
Strategies for your own property tests: :mod:`luno_wf_adaptertest.strategies`.

Names are imported on first use, so importing this package (as the pytest plugin does)
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connector import ConnectorContract as ConnectorContract
    from .directevents import DirectEventsContract as DirectEventsContract
    from .factory import ConnectorFactory as ConnectorFactory
    from .factory import DirectEventsFactory as DirectEventsFactory
    from .factory import RecordStoreFactory as RecordStoreFactory
    from .factory import RevokeRole as RevokeRole
    from .factory import RoleSchedulersFactory as RoleSchedulersFactory
    from .factory import StallMember as StallMember
    from .factory import StreamerFactory as StreamerFactory
    from .factory import TimeoutStoreFactory as TimeoutStoreFactory
    from .factory import factory_of as factory_of
    from .recordstore import RecordStoreContract as RecordStoreContract
    from .rolescheduler import RoleSchedulerContract as RoleSchedulerContract
    from .sharded import ShardedStreamerContract as ShardedStreamerContract
    from .streamer import EventStreamerContract as EventStreamerContract
    from .timeoutstore import TimeoutStoreContract as TimeoutStoreContract

__all__ = [
    "ConnectorContract",
    "ConnectorFactory",
    "DirectEventsContract",
    "DirectEventsFactory",
    "EventStreamerContract",
    "factory_of",
    "RecordStoreContract",
    "RecordStoreFactory",
    "RevokeRole",
    "RoleSchedulerContract",
    "RoleSchedulersFactory",
    "ShardedStreamerContract",
    "StallMember",
    "StreamerFactory",
    "TimeoutStoreContract",
    "TimeoutStoreFactory",
]

_WHERE = {
    "ConnectorContract": "connector",
    "ConnectorFactory": "factory",
    "DirectEventsContract": "directevents",
    "DirectEventsFactory": "factory",
    "EventStreamerContract": "streamer",
    "factory_of": "factory",
    "RecordStoreContract": "recordstore",
    "RecordStoreFactory": "factory",
    "RevokeRole": "factory",
    "RoleSchedulerContract": "rolescheduler",
    "RoleSchedulersFactory": "factory",
    "ShardedStreamerContract": "sharded",
    "StallMember": "factory",
    "StreamerFactory": "factory",
    "TimeoutStoreContract": "timeoutstore",
    "TimeoutStoreFactory": "factory",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
