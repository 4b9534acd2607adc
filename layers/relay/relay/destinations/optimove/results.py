"""Forwarding an Optimove execution's terminal status to the customer (RESULTS_WEBHOOK_URL).

The results queue and the `deliver` function (signing, retries, DLQ) belong to the results path;
this module only hands it one message per terminal status. Nothing is sent when forwarding is
off (no RESULTS_WEBHOOK_URL, no RESULTS_QUEUE_URL, or OPTIMOVE_FORWARD_RESULTS=false).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from relay.core.clock import iso
from relay.destinations.optimove import NAME
from relay.destinations.optimove.settings import OptimoveSettings

logger = Logger(child=True)


def result_message(item: dict[str, Any]) -> dict[str, Any]:
    """The forwarded payload: a normalised result with a stable id (one per terminal status)."""
    status = item["status"]
    return {
        "kind": "optimove_status",
        "event_id": f"optimove:{item['execution_id']}:{status}",
        "type": f"optimove.{status}",
        "occurred_at": iso(float(item.get("updated_at", item["created_at"]))),
        "execution_id": item["execution_id"],
        "destination": NAME,
        "event_generator_id": item.get("event_generator_id"),
        "topic_key": item.get("topic_key"),
        "optimove_execution_id": item.get("optimove_execution_id"),
        "audience_size": item.get("audience_size"),
        "error_code": item.get("error_code"),
        "error_message": item.get("error_message"),
    }


def forward_result(item: dict[str, Any], settings: OptimoveSettings, sqs_client: Any) -> bool:
    """Queue the terminal status for delivery; False when forwarding is off. Never raises: the
    status is stored whatever happens here, and a lost forward is logged loudly."""
    if not (
        settings.optimove_forward_results and settings.results_webhook_url and settings.results_queue_url
    ):
        return False
    import json

    try:
        sqs_client.send_message(
            QueueUrl=settings.results_queue_url,
            MessageBody=json.dumps(result_message(item), separators=(",", ":"), default=str),
        )
    except Exception:
        logger.exception(
            "could not queue the Optimove status for forwarding", extra={"id": item["execution_id"]}
        )
        return False
    return True
