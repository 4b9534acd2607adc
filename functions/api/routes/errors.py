"""OpenAPI descriptions of the documented error answers, shared by every route."""

from __future__ import annotations

from relay.core.models import ErrorResponse

_SCHEMA = {"application/json": {"schema": ErrorResponse.model_json_schema()}}

ERRORS = {
    code: {"description": text, "content": _SCHEMA}
    for code, text in {
        400: "Invalid JSON",
        401: "Missing or wrong API key",
        404: "No such resource",
        409: "Idempotency-Key reused with another body, or a state that does not allow it",
        413: "Body over RELAY_MAX_BODY_BYTES",
        422: "Validation failed; details name each field",
    }.items()
}
