"""Packing: which waiting chunks go upstream together (one lane, up to a batch's size)."""

from __future__ import annotations

from collections.abc import Sequence

from relay.destinations.optimized.store import PendingChunk


def pack(chunks: Sequence[PendingChunk], size: int) -> tuple[list[PendingChunk], bool]:
    """Oldest chunk's lane, filled in order up to ``size`` profiles.

    Returns (batch, full): full when it holds ``size`` profiles or its lane has more than fit."""
    lane = chunks[0].lane
    batch: list[PendingChunk] = []
    total = 0
    lane_total = 0
    for c in chunks:
        if c.lane != lane:
            continue
        lane_total += c.size
        if total + c.size <= size:
            batch.append(c)
            total += c.size
    return batch, total >= size or lane_total > total
