"""Hypothesis profiles of the stateful conformance cases: ``ci`` and ``dev``.

``ci`` runs few examples, derandomized and without the example database, so a run is
repeatable and bounded in time; ``dev`` runs more, random examples. They are settings
objects of this module, not entries in Hypothesis's global profile registry, so they
neither replace nor are replaced by a project's (or Hypothesis's own) ``ci`` profile.

Choose one with ``pytest --luno-wf-hypothesis-profile=dev`` or the
``LUNO_WF_HYPOTHESIS_PROFILE`` environment variable; the default is ``ci``. A contract
subclass can adjust further with :meth:`StatefulCases.hypothesis_settings`.
"""

from __future__ import annotations

import os
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings

from .plugin import PROFILE_ENV, PROFILE_OPTION

__all__ = ["CI", "DEV", "PROFILES", "StatefulCases", "profile_for", "stateful_settings"]

_SLOW_ADAPTERS = [HealthCheck.too_slow, HealthCheck.data_too_large]

CI = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=_SLOW_ADAPTERS,
)
"""Few derandomized examples: repeatable, bounded in time."""

DEV = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=_SLOW_ADAPTERS,
)
"""More random examples, for an author hunting bugs."""

PROFILES = {"ci": CI, "dev": DEV}
"""The profiles by name."""


def profile_for(config: pytest.Config) -> str:
    """The profile name chosen by the command line, the environment, or ``ci``."""
    chosen = config.getoption(PROFILE_OPTION, default=None) or os.environ.get(PROFILE_ENV)
    name = str(chosen or "ci")
    if name not in PROFILES:
        raise pytest.UsageError(f"{PROFILE_ENV}={name!r}: expected 'ci' or 'dev'")
    return name


def stateful_settings(
    config: pytest.Config,
    *,
    max_examples: int | None = None,
    stateful_step_count: int | None = None,
) -> settings:
    """The settings of one stateful case: the chosen profile, then the class's overrides."""
    base = PROFILES[profile_for(config)]
    return settings(
        base,
        max_examples=base.max_examples if max_examples is None else max_examples,
        stateful_step_count=(
            base.stateful_step_count if stateful_step_count is None else stateful_step_count
        ),
    )


class StatefulCases:
    """What a contract class with Hypothesis state machines lets its subclass tune."""

    max_examples: ClassVar[int | None] = None
    """Examples per state machine; None takes the Hypothesis profile's."""
    stateful_step_count: ClassVar[int | None] = None
    """Steps per example; None takes the Hypothesis profile's."""

    def hypothesis_settings(self, base: settings) -> settings:
        """Override to adjust the state machines' settings (``base``: profile and counts).

        Example: ``return settings(base, deadline=timedelta(seconds=1))``.
        """
        return base

    def _stateful_settings(self, request: pytest.FixtureRequest) -> settings:
        base = stateful_settings(
            request.config,
            max_examples=self.max_examples,
            stateful_step_count=self.stateful_step_count,
        )
        return self.hypothesis_settings(base)
