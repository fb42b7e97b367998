"""The in-memory connector passes the connector contract."""

from __future__ import annotations

import pytest
from luno_wf_adaptertest import ConnectorContract, ConnectorFactory, factory_of

from luno_wf.memory import MemConnector


class TestMemConnector(ConnectorContract):
    @pytest.fixture
    def make_connector(self) -> ConnectorFactory:
        return factory_of(MemConnector)
