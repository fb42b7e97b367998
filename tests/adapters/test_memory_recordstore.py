"""The in-memory record store passes the record store contract."""

from __future__ import annotations

import pytest
from luno_wf_adaptertest import RecordStoreContract, RecordStoreFactory, factory_of

from luno_wf.memory import MemRecordStore


class TestMemRecordStore(RecordStoreContract):
    @pytest.fixture
    def make_store(self) -> RecordStoreFactory:
        return factory_of(MemRecordStore)
