"""Paging tokens: DynamoDB's LastEvaluatedKey handed to the caller as an opaque string.

A token comes back from the caller, so it is checked before DynamoDB sees it: exactly the key
attributes of the query it continues, each a string or number attribute value, and the partition
that query reads. Anything else is a ValueError (the routes answer 400), never a DynamoDB error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any


def encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_token(
    token: str | None, *, partition: Mapping[str, str], sort_keys: Iterable[str]
) -> dict[str, Any] | None:
    """The start key in ``token``, which must name the ``partition`` (attribute -> value) the
    query reads and the ``sort_keys`` (and table keys) it pages by; None without a token."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise ValueError("next_token is not valid") from None
    expected = set(partition) | set(sort_keys)
    if not isinstance(key, dict) or set(key) != expected:
        raise ValueError("next_token is not valid (it belongs to another listing)")
    for name, value in key.items():
        if not _string_or_number(value):
            raise ValueError("next_token is not valid")
        if name in partition and value != {"S": partition[name]}:
            raise ValueError("next_token is not valid (it belongs to another listing)")
    return key


def _string_or_number(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    [(kind, text)] = value.items()
    if kind == "S":
        return isinstance(text, str) and len(text) <= 2048
    if kind == "N":
        try:
            float(text)
        except (TypeError, ValueError):
            return False
        return isinstance(text, str)
    return False
