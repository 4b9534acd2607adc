"""Packing: which pending chunks go into one /profiles/update call, and what the call costs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relay.destinations.batch.store import PendingChunk


def pack(chunks: Sequence[PendingChunk], size: int) -> tuple[list[PendingChunk], bool]:
    """Oldest first, filled up to ``size`` operations (a chunk that does not fit is left for the
    next call, and smaller later ones may take its place). Returns (call, full): full when it
    holds ``size`` operations or more wait than fit."""
    call: list[PendingChunk] = []
    total = waiting = 0
    for c in chunks:
        waiting += c.size
        if total + c.size <= size:
            call.append(c)
            total += c.size
    return call, total >= size or waiting > total


def identifier_of(operation: dict[str, Any]) -> str:
    identifiers = operation.get("identifiers") or {}
    if "custom_id" in identifiers:
        return f"custom_id:{identifiers['custom_id']}"
    return f"installation:{identifiers.get('installation')}"


def updates_in(operations: Sequence[dict[str, Any]]) -> int:
    """Batch counts one update per distinct custom id (or installation) in a call, however many
    attributes or events it carries."""
    return len({identifier_of(op) for op in operations})
