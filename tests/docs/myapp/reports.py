"""Reports: requested, then produced."""

from __future__ import annotations

import enum

import attrs


class ReportStatus(enum.IntEnum):
    UNKNOWN = 0
    REQUESTED = 1
    PRODUCED = 2


@attrs.define
class Report:
    kind: str = ""
