"""examples/kafka_quickstart.py runs against the session's broker."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from luno_wf import RunState

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kafka_quickstart.py"


async def test_kafka_quickstart(
    kafka_bootstrap: str, kafka_consumer_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("example_kafka_quickstart", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    run = await module.main(kafka_bootstrap, kafka_consumer_options)
    assert run.run_state == RunState.COMPLETED
    assert run.object.name == "INVOICE"
    assert "reached COMPLETED via Kafka" in capsys.readouterr().out
