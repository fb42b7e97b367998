"""The examples run, so what users copy cannot drift from the code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from luno_wf import RunState

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_quickstart_reaches_completed(capsys: pytest.CaptureFixture[str]) -> None:
    quickstart = load("quickstart")
    final = await quickstart.main()
    assert final.run_state == RunState.COMPLETED
    assert final.object.name == "INVOICE"
    out = capsys.readouterr().out
    assert "reached COMPLETED" in out
    assert "completed at version 3" in out


async def test_order_processing_ships_paid_orders_and_cancels_unpaid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = load("order_processing")
    result, sent = await example.main()
    assert result == {"order-1": RunState.COMPLETED, "order-2": RunState.CANCELLED}
    assert sorted(sent) == [
        "order-1: on its way (TRACK-order-1)",
        "order-2: cancelled (payment not received within 30 minutes)",
    ]
    assert "payment PAY-42 confirmed" in capsys.readouterr().out


async def test_order_saga_refunds_and_releases_when_shipping_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = load("order_saga")
    final, ledger, actors = await example.main()
    assert final == RunState.CANCELLED
    assert ledger == [
        "reserved kettle, mug as RES-order-7",
        "charged 45 EUR as PAY-order-7",
        "refunded PAY-order-7 as REF-PAY-order-7",  # compensations run newest first
        "released RES-order-7",
    ]
    assert actors == [
        "api",
        "step:CREATED",
        "step:STOCK_RESERVED",
        "step:CHARGED",
        "operator:alice",
        "compensated:3",
        "compensated:2",
        "operator:alice",
    ]
    out = capsys.readouterr().out
    assert "paused at CHARGED: CourierUnavailable: no courier will take order-7 today" in out
    assert "cancelled: could not ship; refund REF-PAY-order-7" in out
    assert "History (oldest first):" in out
