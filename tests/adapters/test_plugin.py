"""The pytest plugin is cheap to load, registers the suite's markers, and picks profiles."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import luno_wf_adaptertest
import pytest
from luno_wf_adaptertest.profiles import CI, DEV, stateful_settings

HEAVY = ("hypothesis", "pytest_asyncio", "psycopg", "aiokafka", "luno_wf")


def test_plugin_is_an_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("luno_wf_adaptertest") == "luno_wf_adaptertest.plugin"


def test_plugin_import_is_cheap() -> None:
    code = (
        "import sys, luno_wf_adaptertest.plugin\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}"
        " or m.startswith('luno_wf_adaptertest.') and m != 'luno_wf_adaptertest.plugin'))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", f"importing the plugin imported {out.stdout.strip()}"


def test_markers_registered(pytestconfig: pytest.Config) -> None:
    names = {line.split(":", 1)[0] for line in pytestconfig.getini("markers")}
    assert {
        "conformance",
        "conformance_extension",
        "conformance_stateful",
        "conformance_engine",
    } <= names


def test_public_names_resolve() -> None:
    for name in luno_wf_adaptertest.__all__:
        assert getattr(luno_wf_adaptertest, name) is not None
        assert name in dir(luno_wf_adaptertest)
    assert sorted(luno_wf_adaptertest.__all__, key=str.lower) == luno_wf_adaptertest.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        luno_wf_adaptertest.Nope  # noqa: B018


def test_profiles(pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUNO_WF_HYPOTHESIS_PROFILE", raising=False)
    if pytestconfig.getoption("--luno-wf-hypothesis-profile") is None:
        assert stateful_settings(pytestconfig).max_examples == CI.max_examples
        assert stateful_settings(pytestconfig).derandomize
        monkeypatch.setenv("LUNO_WF_HYPOTHESIS_PROFILE", "dev")
        assert stateful_settings(pytestconfig).max_examples == DEV.max_examples
    tuned = stateful_settings(pytestconfig, max_examples=3, stateful_step_count=4)
    assert (tuned.max_examples, tuned.stateful_step_count) == (3, 4)
    monkeypatch.setenv("LUNO_WF_HYPOTHESIS_PROFILE", "nightly")
    if pytestconfig.getoption("--luno-wf-hypothesis-profile") is None:
        with pytest.raises(pytest.UsageError, match="nightly"):
            stateful_settings(pytestconfig)


def test_docs_name_every_case() -> None:
    """docs/adapters.md lists every case of every contract, so it cannot drift silently."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "adapters.md").read_text()
    contracts = [
        luno_wf_adaptertest.RecordStoreContract,
        luno_wf_adaptertest.TimeoutStoreContract,
        luno_wf_adaptertest.EventStreamerContract,
        luno_wf_adaptertest.RoleSchedulerContract,
        luno_wf_adaptertest.ConnectorContract,
    ]
    for contract in contracts:
        assert f"**{contract.__name__}**" in docs
        for name in vars(contract):
            if name.startswith("test_"):
                assert f"`{name}`" in docs, f"docs/adapters.md does not mention {name}"
