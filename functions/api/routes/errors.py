"""OpenAPI descriptions of the answers of each route: its success and the errors it can give, every
error in the one shape ``{"error": {code, message, details}}`` (a component, ``ErrorResponse``)."""

from __future__ import annotations

from typing import Any

from relay.core.models import ErrorResponse

# Powertools puts a model named under ``content`` into components/schemas and refers to it there.
_ERROR_CONTENT = {"application/json": {"model": ErrorResponse}}

ERROR_TEXT = {
    400: "Invalid JSON body (not UTF-8, not JSON, nested too deep, an integer too long), or a bad "
    "paging token or filter",
    401: "Missing or wrong API key",
    404: "No such resource",
    409: "Idempotency-Key reused with another body or still in progress, or a state that does not allow it",
    413: "Body over RELAY_MAX_BODY_BYTES (or a part of it over what one stored item can hold)",
    422: "Validation failed; details name each field",
    429: "The upstream's limit for this request is taken right now; retry after `Retry-After` seconds",
    502: "The upstream refused the request (its error code and message are in the message)",
    503: "A conflict with a concurrent writer, an unavailable dependency or a busy upstream limit; "
    "send the request again",
}

# Every error an authenticated route can answer, whatever it is (kept for callers that list them all).
ERRORS = {code: {"description": text, "content": _ERROR_CONTENT} for code, text in ERROR_TEXT.items()}

# What every route with a request body can answer before the route sees it, besides its own errors.
BODY_ERRORS = (400, 401, 413, 422)


def answers(success: int, description: str, *errors: int) -> dict[int, Any]:
    """``responses=`` of a route: its success (the schema of its return annotation) and ``errors``."""
    out: dict[int, Any] = {success: {"description": description}}
    for code in sorted(set(errors)):
        out[code] = {"description": ERROR_TEXT[code], "content": _ERROR_CONTENT}
    return out
