"""Poll worker: each SQS message (delayed) reads one Optimove execution's status once and, until
it is terminal or OPTIMOVE_POLL_MAX_S has passed, queues the next read (see relay.flows.optimove_poll)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from relay import wiring
from relay.flows.optimove_poll import poll_one

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)


def _emit(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


@tracer.capture_method
def handle_record(record: SQSRecord) -> str:
    message = json.loads(record.body)
    outcome = poll_one(message["execution_id"], int(message.get("attempt", 1)), wiring.optimove_deps(_emit))
    if outcome in ("published", "failed", "unknown"):
        _emit(f"OptimoveExecutions_{outcome}", 1)
    logger.info("poll done", extra={"execution_id": message["execution_id"], "outcome": outcome})
    return outcome


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
