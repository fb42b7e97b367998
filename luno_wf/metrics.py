"""Prometheus metrics, as luno/workflow has them (see ``docs/metrics.md``).

Workflows report into ``prometheus_client``'s default registry unless built with
``metrics=Metrics(my_registry)``, or with ``metrics=False`` to report nothing::

    registry = CollectorRegistry()
    wf = builder.build(streamer, store, scheduler, metrics=Metrics(registry))
"""

from __future__ import annotations

from ._metrics import LATENCY_BUCKETS as LATENCY_BUCKETS
from ._metrics import Metrics as Metrics
from ._metrics import SkipReason as SkipReason
from ._metrics import default_metrics as default_metrics

__all__ = [
    "default_metrics",
    "LATENCY_BUCKETS",
    "Metrics",
    "SkipReason",
]
