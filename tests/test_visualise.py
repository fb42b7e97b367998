from __future__ import annotations

import enum

import pytest

from luno_wf import Builder, Run
from luno_wf.memory import MemRecordStore, MemRoleScheduler, MemStreamer
from luno_wf.visualise import mermaid

from .support import Obj


class Flow(enum.IntEnum):
    UNKNOWN = 0
    START = 9
    MIDDLE = 10
    END = 11


async def step(r: Run[Obj, Flow]) -> Flow:
    return Flow.END


def test_mermaid_draws_statuses_transitions_start_and_end() -> None:
    b = Builder("diagram", Obj, Flow)
    b.add_step(Flow.START, step, Flow.MIDDLE, Flow.END)
    b.add_step(Flow.MIDDLE, step, Flow.END)
    wf = b.build(MemStreamer(), MemRecordStore(), MemRoleScheduler())
    assert mermaid(wf) == (
        "---\n"
        "title: Workflow diagram of diagram\n"
        "---\n"
        "stateDiagram-v2\n"
        "\tdirection LR\n"
        "\t9: START\n"
        "\t10: MIDDLE\n"
        "\t11: END\n"
        "\t[*] --> 9\n"
        "\tstate 9_branching <<choice>>\n"
        "\t9 --> 9_branching\n"
        "\t9_branching --> 10\n"
        "\t9_branching --> 11\n"
        "\t10 --> 11\n"
        "\t11 --> [*]\n"
    )
    assert "direction TB" in mermaid(wf, direction="TB")
    with pytest.raises(ValueError, match="direction"):
        mermaid(wf, direction="UP")
