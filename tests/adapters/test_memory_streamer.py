"""The in-memory streamer passes the event streamer and sharded streamer contracts."""

from __future__ import annotations

import pytest
from luno_wf_adaptertest import (
    EventStreamerContract,
    ShardedStreamerContract,
    StreamerFactory,
    factory_of,
)

from luno_wf.memory import MemStreamer


class TestMemStreamer(EventStreamerContract):
    @pytest.fixture
    def make_streamer(self) -> StreamerFactory:
        return factory_of(MemStreamer)


class TestMemShardedStreamer(ShardedStreamerContract):
    @pytest.fixture
    def make_streamer(self) -> StreamerFactory:
        return factory_of(MemStreamer)
