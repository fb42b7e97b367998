"""Test plugins of the conformance suite's own tests.

``pytester`` runs the suite, in-process, against deliberately broken adapters and the toy
example adapter.
"""

from __future__ import annotations

pytest_plugins = ["pytester"]
