"""The pytest plugin (``pytest11`` entry point): registers the suite's markers and options.

Importing it is cheap and has no side effects: it imports no adapter, driver or Hypothesis
module. The contract classes live in their own modules and are imported by the test files
that subclass them.
"""

from __future__ import annotations

import pytest

__all__ = ["PROFILE_ENV", "PROFILE_OPTION", "pytest_addoption", "pytest_configure"]

PROFILE_OPTION = "--luno-wf-hypothesis-profile"
"""The command-line option choosing the Hypothesis profile of the stateful cases."""

PROFILE_ENV = "LUNO_WF_HYPOTHESIS_PROFILE"
"""The environment variable read when the option is not given (default ``ci``)."""

MARKERS = (
    "conformance: a case of the luno_wf adapter conformance suite (luno_wf_adaptertest)",
    "conformance_extension: a conformance case beyond luno/workflow's own suite",
    "conformance_stateful: a Hypothesis state machine of the conformance suite",
    "conformance_engine: a conformance case that runs a whole workflow on the adapter",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the suite's options."""
    group = parser.getgroup("luno_wf_adaptertest", "luno_wf adapter conformance suite")
    group.addoption(
        PROFILE_OPTION,
        action="store",
        default=None,
        choices=("ci", "dev"),
        help=(
            "Hypothesis profile of the stateful conformance cases: 'ci' (few, derandomized "
            f"examples; the default) or 'dev' (more, random examples). Env: {PROFILE_ENV}."
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the suite's markers (so ``--strict-markers`` accepts them)."""
    for line in MARKERS:
        config.addinivalue_line("markers", line)
