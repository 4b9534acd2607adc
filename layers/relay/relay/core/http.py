"""HTTP concerns shared by the API functions: the error shape, API-key auth, body limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from typing import Any

from relay.core.models import ErrorBody, ErrorDetail, ErrorResponse, json_safe
from relay.core.validation_messages import sentence

JSON_HEADERS = {"Content-Type": "application/json"}


class ApiError(Exception):
    """An answer in the documented error shape: raise it anywhere below a route."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[ErrorDetail] = (),
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})  # e.g. Retry-After on a 429

    def body(self) -> str:
        return ErrorResponse(
            error=ErrorBody(code=self.code, message=self.message, details=self.details)
        ).model_dump_json(exclude_none=True)

    def as_lambda_response(self) -> dict[str, Any]:
        return {"statusCode": self.status, "headers": {**JSON_HEADERS, **self.headers}, "body": self.body()}


def field_path(loc: Iterable[Any]) -> str:
    """("body", "profiles", 3, "person", "phone_number") -> "profiles[3].person.phone_number"."""
    path = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def validation_error(errors: Sequence[dict[str, Any]]) -> ApiError:
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = json_safe((first.get("ctx") or {}).get("error", "JSON decode error"))
        return ApiError(400, "invalid_json", f"The request body is not valid JSON: {reason}")
    details = [
        ErrorDetail(field=field_path(e.get("loc", ())) or None, message=sentence(e), type=e.get("type"))
        for e in errors
    ]
    first = details[0] if details else None
    message = about(first.field, first.message) if first else "The request is not valid"
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return ApiError(422, "validation_failed", message, details)


def about(field: str | None, problem: str) -> str:
    """One problem as a sentence: ``group_id must be a UUID``, ``schedule.start_at: start_at is
    in the past`` (a validator's own words keep the field apart), ``The body must be ...``."""
    if not field:
        return f"The request {problem}" if problem.startswith(("must ", "is ")) else problem
    return f"{field} {problem}" if problem.startswith(("must ", "is ")) else f"{field}: {problem}"


def raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode()


# DynamoDB nests maps 32 deep at most, and nothing the relay accepts needs more.
MAX_JSON_DEPTH = 32
JSON_TYPES = ("application/json", "+json")


def _not_a_number(name: str) -> Any:
    raise ApiError(422, "validation_failed", f"{name} is not a JSON number; send a finite number or a string")


def check_json_body(event: dict[str, Any]) -> dict[str, Any]:
    """A request body that is not JSON the relay can take gets a 4xx naming why, before any
    route sees it. The body is read as JSON whatever its Content-Type says, or with none: every
    route takes JSON and nothing else, and `curl -d` labels it form-encoded, which Powertools
    would parse as form fields (one "extra" field named after the whole body, the real ones
    "required"). A 415 would only refuse a wrong label on a body that is fine. The event is
    returned with the body as text and Content-Type JSON, so the routes' validation sees the
    fields that were sent."""
    raw = raw_body(event)
    if not raw:
        return event
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_not_a_number)
    except RecursionError:
        raise ApiError(400, "invalid_json", f"The body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {_first_line(exc)}") from None
    if _depth_over(value, MAX_JSON_DEPTH):
        raise ApiError(400, "invalid_json", f"The body nests deeper than {MAX_JSON_DEPTH} levels")
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    return {
        **event,
        "body": text,
        "isBase64Encoded": False,
        "headers": {**headers, "content-type": JSON_TYPES[0]},
    }


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


def _depth_over(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_body_size(event: dict[str, Any], limit: int) -> None:
    size = len(raw_body(event))
    if size > limit:
        raise ApiError(413, "payload_too_large", f"The body has {size} bytes; the limit is {limit}")


def bearer_token(headers: dict[str, str] | None) -> str | None:
    value = (headers or {}).get("authorization") or (headers or {}).get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(headers: dict[str, str] | None, keys: frozenset[str]) -> str:
    """The caller's id (a hash of its key, safe to log) or a 401."""
    token = bearer_token(headers)
    if not token:
        raise ApiError(401, "unauthorized", "Send an API key as 'Authorization: Bearer <key>'")
    # Compare against every key without short-circuit, in constant time per key.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token.encode(), key.encode())
    if not matched:
        raise ApiError(401, "unauthorized", "The API key is not valid")
    return caller_id(token)


def caller_id(token: str) -> str:
    return "key-" + hashlib.sha256(token.encode()).hexdigest()[:12]


def json_body(event: dict[str, Any]) -> Any:
    try:
        return json.loads(raw_body(event) or b"null")
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"The request body is not valid JSON: {exc}") from exc
