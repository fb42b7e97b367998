"""The toy adapter of docs/adapters.md passes the suite, run as its docstring says."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_broken_adapters import INI

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "toy_adapter.py"


@pytest.mark.slow
def test_toy_adapter_passes_the_suite(pytester: pytest.Pytester) -> None:
    # A project of its own: no asyncio auto mode, only what the example file declares.
    pytester.makeini(INI)
    pytester.makepyfile(toy_adapter=EXAMPLE.read_text())
    result = pytester.inline_run("toy_adapter.py")
    passed, skipped, failed = result.listoutcomes()
    assert failed == [], [r.nodeid for r in failed]
    # The optional capabilities the toy leaves out.
    assert sorted(r.nodeid.rsplit("::", 1)[-1] for r in skipped) == [
        "test_batch_outbox_delete",
        "test_dead_letters",
        "test_decoded_outbox_listing",
        "test_history_can_be_turned_off",
        "test_history_none_for_refused_writes",
        "test_history_object_snapshots",
        "test_history_of_store_many",
        "test_history_oldest_first_by_version",
        "test_history_one_entry_per_write",
        "test_history_scrubbed_on_data_deletion",
        "test_lookup_many",
        "test_prune_history_in_small_batches",
        "test_prune_history_keeps_each_runs_newest",
        "test_store_many",
        "test_store_many_refuses_a_run_twice",
    ]
    assert len(passed) >= 20
