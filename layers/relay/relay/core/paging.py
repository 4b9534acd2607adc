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
    return _checked_key(_load(token), partition, sort_keys)


def encode_positions(positions: Mapping[str, dict[str, Any] | None]) -> str:
    """Where each partition of a merged listing stands (None: not started; absent: done)."""
    return encode_token({"positions": dict(positions)})


def decode_positions(
    token: str | None, *, partitions: Iterable[str], partition_key: str, sort_keys: Iterable[str]
) -> dict[str, dict[str, Any] | None] | None:
    """The positions in a token of :func:`encode_positions`, each checked as :func:`decode_token`
    checks a key: only ``partitions`` of this listing, each key naming its own partition."""
    if not token:
        return None
    loaded = _load(token)
    positions = loaded.get("positions") if isinstance(loaded, dict) else None
    known = set(partitions)
    if not isinstance(positions, dict) or not set(positions) <= known:
        raise ValueError("next_token is not valid (it belongs to another listing)")
    return {
        name: None if key is None else _checked_key(key, {partition_key: name}, sort_keys)
        for name, key in positions.items()
    }


def _load(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise ValueError("next_token is not valid") from None


def _checked_key(key: Any, partition: Mapping[str, str], sort_keys: Iterable[str]) -> dict[str, Any]:
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
