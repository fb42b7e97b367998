"""luno_wf_ops: operate luno_wf workflows from a terminal (``luno-wf``) or a browser.

Both front ends call one service layer, :class:`OpsService`: runs listed with filters and
keyset pages, counted per status and run state, shown with their objects, history and
inspection, and paused, resumed, cancelled or deleted (one compare-and-set write each,
naming the operator). :func:`create_app` returns the web UI as a Starlette app to mount at
any prefix.
"""

from __future__ import annotations

from ._model import ActionResult as ActionResult
from ._model import BulkPreview as BulkPreview
from ._model import BulkResult as BulkResult
from ._model import ConsumerLag as ConsumerLag
from ._model import HistoryItem as HistoryItem
from ._model import HistoryView as HistoryView
from ._model import Inspection as Inspection
from ._model import LagView as LagView
from ._model import OutboxStat as OutboxStat
from ._model import Page as Page
from ._model import RunDetail as RunDetail
from ._model import RunQuery as RunQuery
from ._model import RunRow as RunRow
from ._model import StatusCount as StatusCount
from ._model import Verb as Verb
from ._model import WorkflowSummary as WorkflowSummary
from ._model import parse_run_state as parse_run_state
from .service import OpsService as OpsService
from .web import Authorize as Authorize
from .web import Identity as Identity
from .web import Redact as Redact
from .web import create_app as create_app

__all__ = [
    "ActionResult",
    "Authorize",
    "BulkPreview",
    "BulkResult",
    "ConsumerLag",
    "create_app",
    "HistoryItem",
    "HistoryView",
    "Identity",
    "Inspection",
    "LagView",
    "OpsService",
    "OutboxStat",
    "Page",
    "parse_run_state",
    "Redact",
    "RunDetail",
    "RunQuery",
    "RunRow",
    "StatusCount",
    "Verb",
    "WorkflowSummary",
]
