"""Request building: a packed batch as the upstream's body, and its answer mapped back to the
chunks and input profiles it came from."""

from __future__ import annotations

import json
from collections.abc import Sequence

from relay.core.clock import iso
from relay.destinations.optimized.client import Created
from relay.destinations.optimized.models import (
    BatchRequest,
    UpstreamCampaign,
    UpstreamSchedule,
    ceil_to_second,
)
from relay.destinations.optimized.models import upstream_start_at as format_start_at
from relay.destinations.optimized.store import ChunkResult, ClaimedBatch, PendingChunk


def build_request(batch: Sequence[PendingChunk], now: float) -> tuple[BatchRequest, bool, float | None]:
    """The upstream body; a start_at already past is moved to now (and reported as shifted)."""
    profiles = [{k: v for k, v in p.items() if k not in ("index", "ref")} for c in batch for p in c.profiles]
    schedule = batch[0].schedule
    if not schedule:
        return BatchRequest(profiles=profiles), False, None
    start_at = schedule.get("start_at")
    shifted = start_at is not None and start_at < now
    if start_at is None or shifted:
        start_at = ceil_to_second(now)
    upstream = UpstreamSchedule(
        start_at=format_start_at(start_at),
        campaign=UpstreamCampaign(uuid=schedule["campaign_uuid"]),
        calls_per_minute=schedule.get("calls_per_minute"),
    )
    return BatchRequest(profiles=profiles, schedule=upstream), shifted, start_at


def split_created(
    batch: ClaimedBatch, outcome: Created, shifted: bool, start_at: float | None, now: float
) -> list[ChunkResult]:
    """Map the upstream's profiles (same order as sent) back to each chunk and input profile."""
    upstream = outcome.batch.profiles
    schedule_uuid = outcome.batch.schedule.uuid if outcome.batch.schedule else None
    results = []
    offset = 0
    for c in batch.chunks:
        refs = []
        for i, p in enumerate(c.profiles):
            match = upstream[offset + i] if offset + i < len(upstream) else None
            refs.append(
                {
                    "index": p.get("index"),
                    "ref": p.get("ref"),
                    "uuid": match.uuid if match else None,
                    "external_id": match.external_id if match else None,
                }
            )
        offset += c.size
        fields = {
            "batch_uuid": outcome.batch.uuid,
            "schedule_uuid": schedule_uuid,
            "upstream_profiles_json": json.dumps(refs, separators=(",", ":")),
            "sent_at": now,
            "start_shifted": shifted,
            "sent_start_at": iso(start_at) if start_at else None,
        }
        results.append(ChunkResult(c, batch.batch_id, "sent", fields))
    return results
