"""Reconciler (EventBridge, every minute): finds work that would otherwise wait forever - left
untouched for ``RELAY_RECONCILE_AFTER_S`` with nothing in flight to move it - and moves it on.

Each destination and the results path know their own states (``reconcile``); every repair is
counted in a ``Repaired<Kind>`` metric and in ``Repairs``, on which an alarm fires: a repair means
something crashed between two side effects and was caught only here.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from relay import destinations  # noqa: F401 - registers every destination
from relay.core import tracing
from relay.core.settings import get_settings
from relay.executions import registry
from relay.results import reconcile as results

logger = Logger()
metrics = Metrics()
tracer = tracing.tracer()


def _emit(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    now = time.time()
    stale_before = now - get_settings().relay_reconcile_after_s
    repairs: dict[str, int] = {}
    for part in [*registry.every(), results]:
        for kind, count in part.reconcile(now, stale_before, _emit).items():
            repairs[kind] = repairs.get(kind, 0) + count
    for kind, count in repairs.items():
        if count:
            _emit(f"Repaired{kind}", count)
    total = sum(repairs.values())
    _emit("Repairs", total)
    if total:
        logger.warning("repaired work that was left waiting", extra={"repairs": repairs})
    return {"repairs": repairs}
