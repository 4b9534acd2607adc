"""Powertools in one process serving many invocations at once (dev tooling only).

Powertools keeps some state per process - right for Lambda, which runs one invocation per process
at a time. The local stack runs every function's invocations side by side in threads of one
process, which breaks two of those assumptions:

* Metrics keep one metric set per process, so two flushes could race (one serialises a set the
  other just emptied: "Must contain at least one metric"). Adding and flushing take one lock, and
  a flush that finds the set already flushed by another invocation does nothing. Metrics still
  come out as EMF lines on stdout (none at all with ``POWERTOOLS_METRICS_DISABLED=true``, as the
  benchmarks run).
* The event handler stores the event being resolved on the ``BaseRouter`` *class*
  (``BaseRouter.current_event = ...`` in ``resolve``), shared by every resolver in the process.
  Two requests resolved at once would read each other's body and headers - a trigger stored with
  another request's profiles. Here that class attribute (and ``lambda_context``) is kept per
  thread: each invocation runs on its own thread, so each sees its own event.
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
        _lock_metrics()
        _thread_local_router_state()
        _applied = True


def _lock_metrics() -> None:
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider as Provider,
    )

    add_metric, flush_metrics = Provider.add_metric, Provider.flush_metrics

    def locked_add_metric(self: Any, *args: Any, **kwargs: Any) -> Any:
        if is_metrics_disabled():
            # Disabled metrics are never flushed, so they pile up until Powertools prints a full
            # set of 100 anyway: with POWERTOOLS_METRICS_DISABLED, nothing is collected at all.
            return None
        with _lock:
            return add_metric(self, *args, **kwargs)

    def locked_flush_metrics(self: Any, raise_on_empty_metrics: bool = False) -> None:
        with _lock:
            if not self.metric_set and not raise_on_empty_metrics:
                return  # nothing left: another invocation flushed what was added
            flush_metrics(self, raise_on_empty_metrics=raise_on_empty_metrics)

    Provider.add_metric = locked_add_metric  # type: ignore[method-assign]
    Provider.flush_metrics = locked_flush_metrics  # type: ignore[method-assign]


class _PerThread:
    """A data descriptor whose value lives in a ``threading.local``."""

    def __init__(self, store: threading.local, name: str) -> None:
        self.store, self.name = store, name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return getattr(self.store, self.name, None)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(self.store, self.name, value)


def _thread_local_router_state() -> None:
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    store = threading.local()
    names = ("current_event", "lambda_context")
    # Instance reads (app.current_event, router.api_resolver.current_event) find these in the
    # class dict; they go in before the metaclass below starts intercepting class-level writes.
    for name in names:
        setattr(BaseRouter, name, _PerThread(store, name))
    # Class-level writes (BaseRouter.current_event = ...) consult the metaclass first.
    per_thread_meta = type(
        "PerThreadRouterMeta", (type(BaseRouter),), {name: _PerThread(store, name) for name in names}
    )
    BaseRouter.__class__ = per_thread_meta
