"""The benchmarks still run: each is executed with tiny counts and must print its figures.

These check that the scripts work, not how fast anything is (figures on a loaded test
machine mean nothing); run ``make bench`` for figures.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"
FIGURE = r"[\d,]+(\.\d+)?"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_memory_bench_prints_its_figures() -> None:
    out = run("memory.py", "--runs", "200", "--latency-runs", "10")
    assert re.search(rf"steps/s +{FIGURE}\n", out), out
    assert re.search(rf"p50 +{FIGURE} ms", out), out
    assert re.search(rf"engine / bare +{FIGURE}\n", out), out


@pytest.mark.parametrize("mode", ["off", "sdk"])
def test_memory_bench_runs_with_tracing_off_and_with_the_sdk(mode: str) -> None:
    out = run("memory.py", "--runs", "100", "--latency-runs", "5", "--tracing", mode)
    assert re.search(r"tracing +(off|SDK provider)", out), out
    assert re.search(rf"steps/s +{FIGURE}\n", out), out


@pytest.mark.postgres
def test_postgres_bench_prints_the_ratio(postgres_dsn: str) -> None:
    out = run(
        "postgres.py",
        *("--dsn", postgres_dsn, "--ceiling-steps", "200", "--runs", "60", "--single", "5"),
        "--explain",
    )
    assert re.search(rf"\({FIGURE} of \(a\)\)", out), out
    assert re.search(rf"p50 {FIGURE} ms, p99 {FIGURE} ms", out), out
    assert "default build" in out and "(c) " in out and "history off" in out, out
    assert len(re.findall(rf"CPU {FIGURE} us/step", out)) == 6, out
    assert re.search(rf"{FIGURE} calls/run .* PostgresRecordStore\.store", out), out


@pytest.mark.postgres
@pytest.mark.kafka
def test_kafka_bench_prints_every_comparison(postgres_dsn: str, kafka_bootstrap: str) -> None:
    out = run(
        "kafka.py",
        *("--kafka", kafka_bootstrap, "--dsn", postgres_dsn),
        *("--messages", "500", "--hops", "10", "--runs", "60", "--single", "5"),
    )
    for part in ("(a)", "(b)", "(c)", "(d)"):
        assert f"  {part} " in out, out
    assert len(re.findall(rf"{FIGURE} steps/s", out)) == 3, out
    assert len(re.findall(rf"\({FIGURE} of \(a\)\)", out)) == 2, out


@pytest.mark.postgres
def test_fleet_bench_prints_steps_roles_and_shares(postgres_dsn: str) -> None:
    out = run(
        "fleet.py",
        *("--dsn", postgres_dsn, "--runs", "20", "--procs", "1,2", "--step-ms", "1"),
    )
    assert re.search(rf"1 process +: +{FIGURE} steps/s", out), out
    assert re.search(rf"2 processes: +{FIGURE} steps/s +{FIGURE}x one process", out), out
    assert re.search(r"roles per process \[\d+, \d+\]", out), out
    assert re.search(r"steps per process \[\d+ %, \d+ %\]", out), out
    assert "targets: 2 processes >= 1.8x one" in out, out


@pytest.mark.postgres
def test_ops_bench_prints_the_runs_list_beside_its_baseline(postgres_dsn: str) -> None:
    out = run("ops.py", "--dsn", postgres_dsn, "--runs", "200", "--reps", "3")
    assert re.search(rf"200 runs inserted in {FIGURE} s; 3 rounds", out), out
    assert re.search(rf"baseline: .* +{FIGURE} ms +{FIGURE} ms +1\.0x\n", out), out
    for label in ("first page", "deep page", "reads all", "GET /runs", "GET / ", "one pass"):
        assert re.search(rf"{label}.* +{FIGURE} ms +{FIGURE} ms +{FIGURE}x\n", out), (label, out)
    assert re.search(rf"slowest runs list p95: {FIGURE} ms", out), out


def test_every_page_quotes_the_same_figures() -> None:
    """README and the performance, PostgreSQL and Kafka pages quote one table of figures."""
    root = BENCH.parent
    pages = ["README.md", "docs/performance.md", "docs/postgres.md", "docs/kafka.md"]
    blocks = {
        page: re.findall(
            r"<!-- figures:start -->\n(.*?)<!-- figures:end -->", (root / page).read_text(), re.S
        )
        for page in pages
    }
    assert all(len(found) == 1 for found in blocks.values()), blocks
    assert len({found[0] for found in blocks.values()}) == 1, "the pages' figures differ"
