"""Execution items of every destination: created once (iff new), read, listed newest first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from relay.core.clock import iso
from relay.core.store import codec, keys
from relay.core.store.table import MAX_TRANSACTION_ITEMS, ConditionFailed, Table, TransactionCancelled


class ExecutionExists(Exception):
    def __init__(self, existing: dict[str, Any]) -> None:
        super().__init__(existing.get("execution_id"))
        self.existing = existing


# DynamoDB refuses a transaction over 4 MB; item sizes are estimated from their JSON, so stay
# well below it.
MAX_TRANSACTION_BYTES = 3_000_000


def create(table: Table, execution: dict[str, Any], chunks: Sequence[dict[str, Any]]) -> None:
    """Write the execution (iff new) and its chunks; a retry after a crash completes the chunks.

    The first transaction carries the execution with ``attribute_not_exists`` and as many chunks
    as fit (by count and by bytes); if the execution exists, ExecutionExists is raised with what
    is stored.
    """
    head = _fitting(chunks, MAX_TRANSACTION_ITEMS - 1, MAX_TRANSACTION_BYTES - _size(execution))
    operations = [{"Put": {"Item": codec.dump(execution), "ConditionExpression": "attribute_not_exists(pk)"}}]
    operations += [_put_new(c) for c in chunks[:head]]
    try:
        table.transact(operations)
    except TransactionCancelled as cancelled:
        if 0 in cancelled.failed_at():
            existing = table.get(keys.execution(execution["execution_id"]))
            raise ExecutionExists(existing or {}) from cancelled
        raise
    put_chunks(table, chunks[head:])


def put_chunks(table: Table, chunks: Sequence[dict[str, Any]]) -> None:
    """Write chunks that may already exist (resume): existing ones are left as they are."""
    start = 0
    while start < len(chunks):
        part = chunks[
            start : start + max(1, _fitting(chunks[start:], MAX_TRANSACTION_ITEMS, MAX_TRANSACTION_BYTES))
        ]
        start += len(part)
        try:
            table.transact([_put_new(c) for c in part])
        except TransactionCancelled:
            for item in part:
                try:
                    table.put(item, condition="attribute_not_exists(pk)")
                except ConditionFailed:
                    continue


def _fitting(items: Sequence[dict[str, Any]], max_items: int, max_bytes: int) -> int:
    """How many of ``items``, from the first, fit in one transaction's count and bytes."""
    used = 0
    for count, item in enumerate(items[:max_items]):
        used += _size(item)
        if used > max_bytes:
            return count
    return min(len(items), max_items)


def _size(item: dict[str, Any]) -> int:
    return len(json.dumps(item, default=str))


def _put_new(item: dict[str, Any]) -> dict[str, Any]:
    return {"Put": {"Item": codec.dump(item), "ConditionExpression": "attribute_not_exists(pk)"}}


def set_accepted(table: Table, execution_id: str, accepted: dict[str, Any]) -> None:
    table.update(
        keys.execution(execution_id),
        "SET accepted = :a, estimated_dispatch_done_at = :e, warnings = :w",
        values=codec.values(
            a=accepted, e=accepted.get("estimated_dispatch_done_at") or "", w=accepted.get("warnings", [])
        ),
    )


def get(table: Table, execution_id: str) -> dict[str, Any] | None:
    return table.get(keys.execution(execution_id))


Positions = dict[str, dict[str, Any] | None]  # listing partition -> where it stands (None: not started)


def list_page(
    table: Table, *, limit: int, start: Positions | None, since_iso: str | None, until_iso: str | None
) -> tuple[list[dict[str, Any]], Positions | None]:
    """Up to ``limit`` executions, newest first, merged from every partition of the listing;
    and where each partition stands after them (None: every partition read to its end).

    ``start``: the positions a previous page returned (a partition missing from them is done).
    Each partition gives at most ``limit`` items per page, so a page reads at most
    ``limit`` x partitions items, however many executions there are."""
    positions: Positions = start if start is not None else dict.fromkeys(keys.executions_partitions())
    condition = "gsi1pk = :p"
    bounds: dict[str, Any] = {}
    if since_iso and until_iso:
        condition += " AND gsi1sk BETWEEN :a AND :b"
        bounds = {"a": since_iso, "b": until_iso + "~"}
    elif since_iso:
        condition += " AND gsi1sk >= :a"
        bounds = {"a": since_iso}
    elif until_iso:
        condition += " AND gsi1sk <= :b"
        bounds = {"b": until_iso + "~"}
    read: dict[str, tuple[list[dict[str, Any]], bool]] = {}
    for partition, position in positions.items():
        kwargs: dict[str, Any] = {
            "IndexName": keys.EXECUTIONS_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": codec.values(p=partition, **bounds),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if position:
            kwargs["ExclusiveStartKey"] = position
        items, last = table.query(**kwargs)
        read[partition] = (items, last is not None)
    newest = sorted(
        ((item, partition) for partition, (items, _) in read.items() for item in items),
        key=lambda pair: str(pair[0]["gsi1sk"]),
        reverse=True,
    )[:limit]
    taken: dict[str, dict[str, Any]] = {}
    for item, partition in newest:
        taken[partition] = item  # the last one taken from each partition
    after: Positions = {}
    for partition, (items, more) in read.items():
        if partition in taken:
            last_taken = taken[partition]
            if more or last_taken is not items[-1]:
                after[partition] = codec.dump({k: last_taken[k] for k in ("pk", "sk", "gsi1pk", "gsi1sk")})
        elif items or more:
            after[partition] = positions[partition]  # nothing of it on this page: it stays where it was
    return [item for item, _ in newest], (after or None)


def with_run_time(table: Table, from_ts: float, to_ts: float, *, limit: int) -> list[dict[str, Any]]:
    """Executions of every destination with a run time in [from, to], soonest first, at most
    ``limit``: read from the run-time index, one UTC day at a time, then the items themselves."""
    found: list[dict[str, str]] = []
    first, last = iso(from_ts), iso(to_ts)
    day = datetime.fromtimestamp(from_ts, UTC).date()
    while len(found) < limit and day.isoformat() <= last[:10]:
        of_day: list[dict[str, str]] = []
        for partition in keys.run_day_partitions(day.isoformat()):
            page, _ = table.query(
                IndexName=keys.RUN_TIMES_INDEX,
                KeyConditionExpression="gsi3pk = :p AND gsi3sk BETWEEN :a AND :b",
                ExpressionAttributeValues=codec.values(p=partition, a=first, b=last + "~"),
                Limit=limit - len(found),
            )
            of_day += page
        found += sorted(of_day, key=lambda k: str(k["gsi3sk"]))[: limit - len(found)]
        day += timedelta(days=1)
    items = {(i["pk"], i["sk"]): i for i in table.get_many([{"pk": k["pk"], "sk": k["sk"]} for k in found])}
    return [items[(k["pk"], k["sk"])] for k in found if (k["pk"], k["sk"]) in items]
