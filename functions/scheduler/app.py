"""Scheduler (EventBridge, every minute): releases scheduled Optimove triggers due within the
lookahead, each queued with an SQS delay until its send_at (see relay.flows.optimove_schedule)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from relay import wiring
from relay.config import get_settings
from relay.flows.optimove_schedule import release_due

logger = Logger()
metrics = Metrics()
tracer = Tracer()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    released = release_due(
        wiring.table(), wiring.optimove_queues(), time.time(), get_settings().optimove_scheduler_lookahead_s
    )
    if released:
        metrics.add_metric(name="OptimoveTriggersReleased", unit=MetricUnit.Count, value=released)
        logger.info("released scheduled triggers", extra={"released": released})
    return {"released": released}
