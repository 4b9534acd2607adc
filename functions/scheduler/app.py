"""Scheduler (EventBridge, every minute): every destination releases its scheduled work that is
due within its lookahead onto its queue."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from relay import destinations  # noqa: F401 - registers every destination
from relay.core import tracing
from relay.executions import registry

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
    released = sum(destination.release_due(now, _emit) for destination in registry.every())
    if released:
        logger.info("released scheduled work", extra={"released": released})
    return {"released": released}
