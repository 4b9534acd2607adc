"""Inbound Optimized.app webhooks (POST /v1/webhooks/optimized), kept apart from the API so it
stays small and fast: size check, signature on the raw bytes, parse, store each event with its
de-duplication mark, queue, answer. Linking, counting and forwarding happen in the deliver
function; what a crash leaves between storing and queueing, the platform's retry or the
reconciler completes."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from relay.core import tracing
from relay.core.http import JSON_HEADERS, ApiError, raw_body
from relay.results import wiring
from relay.results.ingest import QueueUnavailable, ingest
from relay.results.settings import get_settings
from relay.results.signatures import SignatureError

logger = Logger()
metrics = Metrics()
tracer = tracing.tracer()


def _emit(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def handle(event: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    try:
        body = raw_body(event)  # base64-decoded when API Gateway encoded it
    except ValueError as exc:
        raise ApiError(400, "invalid_body", "The body is not valid base64") from exc
    if len(body) > settings.webhook_max_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"The body has {len(body)} bytes; the limit is {settings.webhook_max_bytes}",
        )
    try:
        delivery_id = wiring.verifier().verify(event.get("headers"), body, time.time())
    except SignatureError as exc:
        metrics.add_metric(name="WebhookSignatureRejected", unit=MetricUnit.Count, value=1)
        logger.warning("webhook signature rejected", extra={"reason": str(exc)})
        raise ApiError(401, "invalid_signature", "The webhook signature is missing, wrong or stale") from exc
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"The request body is not valid JSON: {exc}") from exc
    deps = wiring.ingest_deps(_emit)
    try:
        accepted = ingest(payload, deps)
    except QueueUnavailable as exc:
        logger.error(
            "results stored but not all queued; the platform's retry or the reconciler queues them",
            extra={"error": str(exc)},
        )
        raise ApiError(503, "unavailable", "Try again later") from exc
    metrics.add_metric(name="WebhookEventsAccepted", unit=MetricUnit.Count, value=accepted.accepted)
    metrics.add_metric(name="WebhookEventsDuplicate", unit=MetricUnit.Count, value=accepted.duplicates)
    logger.info(
        "webhook accepted",
        extra={"delivery_id": delivery_id, "accepted": accepted.accepted, "duplicates": accepted.duplicates},
    )
    return {"statusCode": 202, "headers": JSON_HEADERS, "body": accepted.model_dump_json()}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return handle(event)
    except ApiError as error:
        return error.as_lambda_response()
    except Exception:
        # The platform retries a 5xx; nothing was acknowledged, so nothing is lost.
        logger.exception("unexpected error")
        return ApiError(
            500, "internal_error", "Something went wrong; it has been logged"
        ).as_lambda_response()
