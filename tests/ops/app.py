"""An application module for ``luno-wf --app tests.ops.app:workflows``."""

from __future__ import annotations

from luno_wf.memory import MemRecordStore

from .support import build

workflows = [build(MemRecordStore())]
