"""The in-memory timeout store passes the timeout store contract."""

from __future__ import annotations

import pytest
from luno_wf_adaptertest import TimeoutStoreContract, TimeoutStoreFactory, factory_of

from luno_wf.memory import MemTimeoutStore


class TestMemTimeoutStore(TimeoutStoreContract):
    @pytest.fixture
    def make_timeout_store(self) -> TimeoutStoreFactory:
        return factory_of(MemTimeoutStore)
