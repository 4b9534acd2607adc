"""The OpenAPI document served at ``GET /v1/openapi.json``: what Powertools generates from the
routes, completed with what it cannot say on its own.

- Public routes (health, this document) need no API key: ``security: []`` (Powertools drops an
  empty list, so they inherited the global bearer requirement).
- Powertools adds a 422 ``HTTPValidationError`` to every route; the relay answers validation errors
  in its own shape, so that 422 becomes ``ErrorResponse``, and goes where a route takes no input.
- ``POST /v1/webhooks/optimized`` is served by the ``webhooks`` function (its own Lambda, same
  HTTP API) and authenticated by its signature, not by an API key: described here by hand.
"""

from __future__ import annotations

import json
from typing import Any

from relay.results.models import WebhookAccepted

REF = "#/components/schemas/"
_POWERTOOLS_422 = f"{REF}HTTPValidationError"
_POWERTOOLS_ONLY = ("HTTPValidationError", "ValidationError")
WEBHOOK_PATH = "/v1/webhooks/optimized"


def complete(document: dict[str, Any], public: set[str]) -> dict[str, Any]:
    """``document`` (a generated OpenAPI dict) made truthful; ``public`` holds "METHOD /path"."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if f"{method.upper()} {path}" in public:
                operation["security"] = []
            _own_validation_error(operation)
    document["paths"][WEBHOOK_PATH] = {"post": _webhook_operation(schemas)}
    text = json.dumps(document)
    for name in _POWERTOOLS_ONLY:
        if f'"{REF}{name}"' not in text:
            schemas.pop(name, None)
    return document


def _own_validation_error(operation: dict[str, Any]) -> None:
    responses = operation.get("responses", {})
    answer = responses.get("422") or responses.get(422)
    if not answer or _POWERTOOLS_422 not in json.dumps(answer):
        return
    responses.pop("422", None)
    responses.pop(422, None)
    if operation.get("parameters") or operation.get("requestBody"):
        responses["422"] = _error("Validation failed; details name each field")


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"{REF}ErrorResponse"}}},
    }


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _webhook_operation(schemas: dict[str, Any]) -> dict[str, Any]:
    schemas.setdefault("WebhookAccepted", WebhookAccepted.model_json_schema(ref_template=REF + "{model}"))
    event = {"type": "object", "description": "One Optimized.app event, as the platform sends it"}
    return {
        "tags": ["results"],
        "summary": "Inbound Optimized.app results (served by the webhooks function)",
        "description": "Authenticated by its signature, not by an API key: Standard Webhooks "
        "(`webhook-id`, `webhook-timestamp`, `webhook-signature`) by default, or a plain HMAC of the "
        "body in one header with `WEBHOOK_SCHEME=hmac` (`WEBHOOK_HMAC_HEADER`, default `x-signature`). "
        "The signature is checked on the raw bytes before the body is parsed.",
        "operationId": "post_webhook_optimized_v1_webhooks_optimized_post",
        "security": [],
        "parameters": [
            _header("webhook-id", "Standard Webhooks: the message id (stable across the platform's retries)"),
            _header("webhook-timestamp", "Standard Webhooks: Unix seconds, within WEBHOOK_TOLERANCE_S"),
            _header(
                "webhook-signature",
                'Standard Webhooks: space-separated "v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>"',
            ),
            _header("x-signature", "WEBHOOK_SCHEME=hmac: the HMAC of the body (the header is configurable)"),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "description": 'One event, a JSON array of events, or {"events": [...]}',
                        "anyOf": [event, {"type": "array", "items": event}],
                    }
                }
            },
        },
        "responses": {
            "202": {
                "description": "Stored (new events queued; redelivered ones counted as duplicates)",
                "content": {"application/json": {"schema": {"$ref": f"{REF}WebhookAccepted"}}},
            },
            "400": _error("The body is not valid base64 or not JSON"),
            "401": _error("The signature is missing, forged, stale or from the future"),
            "413": _error("Body over WEBHOOK_MAX_BYTES"),
            "503": _error("Stored but not all queued; the platform's retry or the reconciler queues them"),
        },
    }
