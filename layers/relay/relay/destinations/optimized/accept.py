"""Accepting an Optimized.app trigger: store the execution and its chunks, wake the group."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from relay.core.clock import Clock, iso
from relay.core.failpoints import failpoint
from relay.core.http import ApiError
from relay.core.store import keys
from relay.core.store.table import Table
from relay.destinations.optimized import NAME
from relay.destinations.optimized import store as dispatch_store
from relay.destinations.optimized.models import OptimizedTrigger, Schedule, TriggerAccepted
from relay.destinations.optimized.settings import OptimizedSettings
from relay.destinations.optimized.wakeups import Wakeups
from relay.executions import store as executions
from relay.executions.requests import IdempotencyConflict


@dataclass
class AcceptDeps:
    table: Table
    queue: Wakeups
    settings: OptimizedSettings
    clock: Clock


def lane_of(schedule: Schedule | None) -> str:
    """Profiles may share an upstream batch only if they share this (one schedule per batch)."""
    if schedule is None:
        return "unscheduled"
    start = f"{schedule.start_at.timestamp():.0f}" if schedule.start_at else "asap"
    return f"{schedule.campaign_uuid}|{start}|{schedule.calls_per_minute or ''}"


def stored_schedule(schedule: Schedule | None) -> dict[str, Any] | None:
    if schedule is None:
        return None
    return {
        "campaign_uuid": str(schedule.campaign_uuid),
        "start_at": schedule.start_at.timestamp() if schedule.start_at else None,
        "calls_per_minute": schedule.calls_per_minute,
    }


# A chunk is one DynamoDB item (at most 400 KB with its other attributes).
MAX_CHUNK_BYTES = 300_000


class ProfileTooLarge(ApiError):
    def __init__(self, index: int, size: int) -> None:
        super().__init__(
            413,
            "profile_too_large",
            f"profiles[{index}] is {size:,} bytes as JSON; a profile may be at most {MAX_CHUNK_BYTES:,}",
        )


def split_into_chunks(profiles: list[dict[str, Any]], size: int, max_bytes: int) -> list[tuple[str, int]]:
    """Profiles in input order as chunks of at most ``size`` profiles and ``max_bytes`` of JSON:
    each chunk's profiles as one JSON array, and how many it holds."""
    chunks: list[tuple[str, int]] = []
    current: list[str] = []
    used = 0
    for profile in profiles:
        text = json.dumps(profile, separators=(",", ":"))
        if len(text) > max_bytes:
            raise ProfileTooLarge(int(profile.get("index", 0)), len(text))
        if current and (len(current) >= size or used + len(text) + 1 > max_bytes):
            chunks.append(("[" + ",".join(current) + "]", len(current)))
            current, used = [], 0
        current.append(text)
        used += len(text) + 1
    if current:
        chunks.append(("[" + ",".join(current) + "]", len(current)))
    return chunks


def estimate_done(pending_profiles: int, settings: OptimizedSettings, now: float) -> float:
    """When the group's queue (ours included) should be through, at the configured limit."""
    batches = max(1, math.ceil(pending_profiles / settings.optimized_batch_size))
    windows = (batches - 1) // settings.optimized_group_limit
    return now + windows * (settings.optimized_group_window_s + settings.optimized_window_margin_s)


def accept_optimized(
    trigger: OptimizedTrigger, *, execution_id: str, request_hash: str, caller: str, deps: AcceptDeps
) -> TriggerAccepted:
    settings, table, now = deps.settings, deps.table, deps.clock()
    size = settings.optimized_batch_size
    group_id = trigger.group_id
    lane = lane_of(trigger.schedule)
    schedule = stored_schedule(trigger.schedule)
    created_iso = iso(now)
    expires_at = int(now + settings.execution_ttl_days * 86_400)

    profiles = [
        {"index": i, **p.model_dump(mode="json", exclude_none=True)} for i, p in enumerate(trigger.profiles)
    ]
    chunks = [
        {
            **keys.chunk(execution_id, seq),
            "kind": "chunk",
            "execution_id": execution_id,
            "seq": seq,
            "group_id": group_id,
            "lane": lane,
            "schedule": schedule,
            # One JSON string, not a DynamoDB map: the relay never queries inside profiles, and
            # a string costs a fraction of a nested map to serialise on every read and write.
            "profiles_json": profiles_json,
            "profile_count": count,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "created_iso": created_iso,
            "gsi2pk": keys.pending_partition(group_id),
            "gsi2sk": keys.pending_sort(created_iso, execution_id, seq),
            "expires_at": expires_at,
        }
        for seq, (profiles_json, count) in enumerate(split_into_chunks(profiles, size, MAX_CHUNK_BYTES))
    ]

    pending_before = int(dispatch_store.read_group(table, group_id).get("pending_profiles", 0))
    done_at = estimate_done(pending_before + len(profiles), settings, now)
    warnings = []
    if trigger.schedule and trigger.schedule.start_at and done_at > trigger.schedule.start_at.timestamp():
        warnings.append(
            f"dispatch is estimated to finish at {iso(done_at)}, after start_at "
            f"{iso(trigger.schedule.start_at.timestamp())}: chunks sent late start when they are sent"
        )
    accepted = TriggerAccepted(
        execution_id=execution_id,
        status="queued",
        profiles=len(profiles),
        chunks=len(chunks),
        estimated_dispatch_done_at=iso(done_at),
        warnings=warnings,
    )
    execution = {
        **keys.execution(execution_id),
        "kind": "execution",
        "execution_id": execution_id,
        "destination": NAME,
        "group_id": group_id,
        "schedule": schedule,
        "profiles_total": len(profiles),
        "chunks_total": len(chunks),
        "created_at": now,
        "created_iso": created_iso,
        "updated_at": now,
        "caller": caller,
        "body_hash": request_hash,
        "accepted": accepted.model_dump(mode="json"),
        "estimated_dispatch_done_at": accepted.estimated_dispatch_done_at,
        "warnings": warnings,
        **keys.executions_listing(execution_id, created_iso),
        # Outbox: "this group needs a wake-up", written with the work itself and removed once the
        # group is armed and woken. A crash in between leaves it for the reconciler to find.
        "gsi2pk": keys.awaiting_wakeup_partition(execution_id),  # spread: one group may be busy
        "gsi2sk": keys.awaiting_wakeup_sort(created_iso, group_id),
        "expires_at": expires_at,
    }
    if trigger.schedule and trigger.schedule.start_at:
        execution |= keys.run_time(iso(trigger.schedule.start_at.timestamp()), execution_id)
    try:
        executions.create(table, execution, chunks)
    except executions.ExecutionExists as exists:
        if exists.existing.get("body_hash") != request_hash:
            raise IdempotencyConflict(execution_id) from exists
        # A retry of a request that may have died half-way: finish writing, then wake the group
        # whatever its flag says (the first attempt may have armed it and died before the wake-up:
        # a duplicate wake-up costs one empty look, a missing one strands the group).
        executions.put_chunks(table, chunks)
        dispatch_store.arm(table, group_id, 0, now)
        deps.queue.wake(group_id)
        dispatch_store.woken(table, execution_id)
        return TriggerAccepted.model_validate(exists.existing["accepted"])
    failpoint("accept.after_store")
    was_armed, _ = dispatch_store.arm(table, group_id, len(profiles), now)
    failpoint("accept.after_arm")
    if not was_armed:
        deps.queue.wake(group_id)
        failpoint("accept.after_wake")
    dispatch_store.woken(table, execution_id)
    return accepted
