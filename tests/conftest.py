"""Shared test configuration.

Server fixtures live in their own modules under ``tests/fixtures`` and are loaded here.
"""

from __future__ import annotations

pytest_plugins: list[str] = [
    "tests.adapters.fixtures",
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
]
