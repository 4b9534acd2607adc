"""Scheduled work: Optimove triggers waiting for send_at (gsi2, sparse) and, for listing, every
execution with a future time of any destination (gsi1 with a filter)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from relay.store import codec, keys
from relay.store.optimove import SCHEDULED_PARTITION
from relay.store.table import Table


def scheduled_sort(send_at_iso: str, execution_id: str) -> str:
    return f"{send_at_iso}#{execution_id}"


def due(table: Table, until_iso: str, *, limit: int = 500) -> list[dict[str, Any]]:
    """Scheduled Optimove triggers with send_at <= until (oldest first), as gsi2 shows them."""
    items, _ = table.query(
        IndexName=keys.PENDING_INDEX,
        KeyConditionExpression="gsi2pk = :p AND gsi2sk <= :u",
        ExpressionAttributeValues=codec.values(p=SCHEDULED_PARTITION, u=until_iso + "~"),
        Limit=limit,
    )
    return items


def with_run_time(table: Table, from_ts: float, to_ts: float, created_until_iso: str) -> Iterator[dict]:
    """Executions of every destination that have a run time in [from, to]: Optimove ``send_at``,
    Optimized.app ``schedule.start_at``. Work for time T was created before T, so only executions
    created up to ``to`` are read (gsi1 is ordered by creation)."""
    yield from table.query_all(
        IndexName=keys.EXECUTIONS_INDEX,
        KeyConditionExpression="gsi1pk = :p AND gsi1sk <= :b",
        FilterExpression="(send_at BETWEEN :f AND :t) OR (#sch.start_at BETWEEN :f AND :t)",
        ExpressionAttributeNames={"#sch": "schedule"},
        ExpressionAttributeValues=codec.values(
            p=keys.EXECUTIONS_PARTITION, b=created_until_iso + "~", f=from_ts, t=to_ts
        ),
        ScanIndexForward=False,
    )
