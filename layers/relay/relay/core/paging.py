"""Paging tokens: DynamoDB's LastEvaluatedKey handed to the caller as an opaque string."""

from __future__ import annotations

import base64
import json
from typing import Any


def encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_token(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as exc:
        raise ValueError("next_token is not valid") from exc
    if not isinstance(key, dict):
        raise ValueError("next_token is not valid")
    return key
