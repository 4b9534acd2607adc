"""Dispatch worker: each SQS message wakes one group's dispatcher (see relay.flows.dispatch)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from relay import wiring
from relay.config import get_settings
from relay.flows.dispatch import DispatchDeps, GroupDispatcher

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)


def _emit(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


@tracer.capture_method
def handle_record(record: SQSRecord, lambda_context: Any) -> str:
    message = json.loads(record.body)
    if message.get("destination") == "optimove":  # OptimoveQueue: one run per message
        from relay.flows.optimove_send import send_one

        outcome = send_one(message["execution_id"], wiring.optimove_deps(_emit))
        logger.info("optimove send done", extra={"execution_id": message["execution_id"], "outcome": outcome})
        return outcome
    group_id = message["group_id"]
    deps = DispatchDeps(
        table=wiring.table(),
        queue=wiring.wake_queue(),
        client=wiring.optimized_client(),
        settings=get_settings(),
        emit=_emit,
        links=wiring.links_table(),
    )
    dispatcher = GroupDispatcher(group_id, deps, early_s=float(message.get("early_s", 0)))
    outcome = dispatcher.run(lambda_context.get_remaining_time_in_millis)
    logger.info("dispatcher done", extra={"group_id": group_id, "outcome": outcome})
    return outcome


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
