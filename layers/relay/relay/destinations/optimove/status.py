"""Optimove right now (`GET /v1/status`): runs scheduled for later and runs under way (queued,
sending or followed by polls). The brand limiter is named by the brand key, a secret the API does
not read, so its use is on the dashboard (runs per second against OptimoveBrandRps) instead."""

from __future__ import annotations

from relay.core.store import codec, keys
from relay.core.store.table import Table
from relay.executions.models import DestinationStatus, WaitingWork


def _count(table: Table, partition: str) -> int:
    return table.count(
        IndexName=keys.WAITING_INDEX,
        KeyConditionExpression="gsi2pk = :p",
        ExpressionAttributeValues=codec.values(p=partition),
    )


def status(table: Table, name: str) -> DestinationStatus:
    scheduled = _count(table, keys.scheduled_partition(name))
    under_way = sum(_count(table, partition) for partition in keys.due_partitions(name))
    return DestinationStatus(
        destination=name,
        waiting=[
            WaitingWork(what="runs scheduled for later", count=scheduled),
            WaitingWork(what="runs under way (queued, sending or polled)", count=under_way),
        ],
    )
