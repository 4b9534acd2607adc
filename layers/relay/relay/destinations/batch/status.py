"""Batch.com right now (`GET /v1/status`): operation chunks pending per lane (one lane per project
key) and the profile-updates token bucket of each, found from the lanes awaiting a wake-up (a lane
with work is always among them). Lanes and limiters carry the project key's hash, never the key."""

from __future__ import annotations

from relay.core.store import codec, keys
from relay.core.store.table import Table
from relay.executions.models import DestinationStatus, LimiterUse, WaitingWork

LANE_PREFIX = "batch#"


def waiting_lanes(table: Table, name: str) -> list[str]:
    lanes: set[str] = set()
    for partition in keys.due_partitions(name):
        items, _ = table.query(
            IndexName=keys.WAITING_INDEX,
            KeyConditionExpression="gsi2pk = :p",
            ExpressionAttributeValues=codec.values(p=partition),
        )
        lanes.update(
            str(i["group_id"]) for i in items if str(i["pk"]).startswith("GROUP#") and i.get("group_id")
        )
    return sorted(lanes)


def status(table: Table, name: str, now: float) -> DestinationStatus:
    from relay.core.limiter.token_bucket import TokenBucket
    from relay.destinations.batch.settings import get_settings

    settings = get_settings()
    waiting, limiters = [], []
    for lane in waiting_lanes(table, name):
        pending = table.count(
            IndexName=keys.WAITING_INDEX,
            KeyConditionExpression="gsi2pk = :p",
            ExpressionAttributeValues=codec.values(p=keys.pending_partition(lane)),
        )
        waiting.append(WaitingWork(what="operation chunks pending", key=lane, count=pending))
        project = lane.removeprefix(LANE_PREFIX)
        bucket = TokenBucket(
            table=table,
            name=f"batch:updates:{project}",
            rate=settings.batch_profile_updates_per_s,
            burst=settings.batch_profile_updates_burst,
            slack_s=settings.batch_updates_slack_s,
        )
        available = bucket.available(bucket.read(), now)
        limiters.append(
            LimiterUse(
                name=f"profile updates, project {project}",
                used=round(bucket.capacity - available),
                limit=round(bucket.capacity),
                window_s=round(bucket.capacity / bucket.rate, 3),
                next_slot_in_s=round(max(0.0, 1.0 - available) / bucket.rate, 3),
            )
        )
    return DestinationStatus(destination=name, waiting=waiting, limiters=limiters)
