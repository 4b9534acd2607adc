"""Results worker: records each queued result against its execution and forwards it, signed, to
the customer's endpoint (retries re-queue the message with a back-off delay; see
relay.results.deliver)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from relay import destinations  # noqa: F401 - registers every destination (results may be mirrored)
from relay.core import tracing
from relay.results import wiring
from relay.results.deliver import handle_message

logger = Logger()
metrics = Metrics()
tracer = tracing.tracer()
processor = BatchProcessor(event_type=EventType.SQS)


def _emit(name: str, value: float) -> None:
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


_context: Any = None  # this invocation's, for the time it has left


def _remaining_ms() -> int:
    return _context.get_remaining_time_in_millis() if _context is not None else 900_000


@tracer.capture_method
def handle_record(record: SQSRecord) -> str:
    outcome = handle_message(json.loads(record.body), wiring.deliver_deps(_emit, _remaining_ms))
    logger.debug("result handled", extra={"outcome": outcome})
    return outcome


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _context
    _context = context
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
