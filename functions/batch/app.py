"""Batch worker: each SQS message of the Batch queue is handed to the Batch destination (a
wake-up of the profile dispatcher, an audience write or indexing check), which does its work
within Batch's limits."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from relay import destinations  # noqa: F401 - registers every destination
from relay.core import tracing
from relay.executions import registry

logger = Logger()
metrics = Metrics()
tracer = tracing.tracer()
processor = BatchProcessor(event_type=EventType.SQS)


def _emit(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


@tracer.capture_method
def handle_record(record: SQSRecord, lambda_context: Any) -> str:
    message = json.loads(record.body)
    destination = registry.get(message.get("destination"))
    outcome = destination.process(
        message, remaining_ms=lambda_context.get_remaining_time_in_millis, emit=_emit
    )
    logger.info(
        "message handled",
        extra={"destination": destination.name, "kind": message.get("kind"), "outcome": outcome}
        | {k: message[k] for k in ("execution_id", "name") if k in message},
    )
    return outcome


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
