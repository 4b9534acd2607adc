"""Optimized.app right now (`GET /v1/status`): profiles waiting per group and each group's use of
its window, from the groups awaiting a wake-up (a group with work is always among them)."""

from __future__ import annotations

from relay.core.limiter.log_store import read_logs
from relay.core.limiter.sliding_log import Rule
from relay.core.store import codec, keys
from relay.core.store.table import Table
from relay.executions.models import DestinationStatus, LimiterUse, WaitingWork

# Groups shown at most: a status is a glance, not a listing.
MAX_GROUPS = 50


def group_log_name(group_id: str) -> str:
    """The group's limiter log, as the dispatcher names it."""
    return f"optimized-group#{group_id}"


def waiting_groups(table: Table, limit: int = MAX_GROUPS) -> list[str]:
    """Groups that have work or a wake-up on its way (every shard of the awaiting index)."""
    found: list[str] = []
    for partition in keys.awaiting_wakeup_partitions():
        items, _ = table.query(
            IndexName=keys.WAITING_INDEX,
            KeyConditionExpression="gsi2pk = :p",
            ExpressionAttributeValues=codec.values(p=partition),
            Limit=limit,
        )
        # The same index holds accepted executions whose group is not woken yet (no group state).
        found += [
            str(i["group_id"]) for i in items if str(i["pk"]).startswith("GROUP#") and i.get("group_id")
        ]
    return sorted(set(found))[:limit]


def status(table: Table, name: str, now: float) -> DestinationStatus:
    from relay.destinations.optimized.settings import get_settings

    settings = get_settings()
    groups = waiting_groups(table)
    states = {str(i["group_id"]): i for i in table.get_many([keys.group_state(g) for g in groups])}
    rule = Rule(
        settings.optimized_group_limit, settings.optimized_group_window_s + settings.optimized_window_margin_s
    )
    logs = read_logs(table, [group_log_name(g) for g in groups]) if groups else {}
    waiting, limiters = [], []
    for group in groups:
        pending = int(states.get(group, {}).get("pending_profiles", 0))
        waiting.append(WaitingWork(what="profiles pending", key=group, count=max(0, pending)))
        log = logs[group_log_name(group)]
        # A dispatcher takes slots ahead of their time: those are booked, not used yet.
        recent = log.recent(rule, now)
        limiters.append(
            LimiterUse(
                name=f"group {group}",
                used=sum(1 for t in recent if t <= now),
                booked_ahead=sum(1 for t in recent if t > now),
                limit=rule.limit,
                window_s=rule.window_s,
                next_slot_in_s=round(max(0.0, log.next_slot(rule, now) - now), 3),
            )
        )
    return DestinationStatus(destination=name, waiting=waiting, limiters=limiters)
