"""Powertools Metrics in one process serving many invocations at once (dev tooling only).

Powertools keeps one metric set per process - right for Lambda, which runs one invocation per
process at a time. The local stack runs every function's invocations side by side in one process,
so two flushes could race (one serialises a set the other just emptied: "Must contain at least one
metric"). Here adding and flushing take one lock, and a flush that finds the set already flushed by
another invocation does nothing. Metrics still come out as EMF lines on stdout.
"""

from __future__ import annotations

import threading
from typing import Any

_applied = False
_lock = threading.RLock()


def apply() -> None:
    global _applied
    with _lock:
        if _applied:
            return
        from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
            AmazonCloudWatchEMFProvider as Provider,
        )

        add_metric, flush_metrics = Provider.add_metric, Provider.flush_metrics

        def locked_add_metric(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _lock:
                return add_metric(self, *args, **kwargs)

        def locked_flush_metrics(self: Any, raise_on_empty_metrics: bool = False) -> None:
            with _lock:
                if not self.metric_set and not raise_on_empty_metrics:
                    return  # nothing left: another invocation flushed what was added
                flush_metrics(self, raise_on_empty_metrics=raise_on_empty_metrics)

        Provider.add_metric = locked_add_metric  # type: ignore[method-assign]
        Provider.flush_metrics = locked_flush_metrics  # type: ignore[method-assign]
        _applied = True
