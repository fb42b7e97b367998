"""The in-memory streamer passes the event streamer contract."""

from __future__ import annotations

import pytest
from luno_wf_adaptertest import EventStreamerContract, StreamerFactory, factory_of

from luno_wf.memory import MemStreamer


class TestMemStreamer(EventStreamerContract):
    @pytest.fixture
    def make_streamer(self) -> StreamerFactory:
        return factory_of(MemStreamer)
