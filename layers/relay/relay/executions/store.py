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


def list_page(
    table: Table, *, limit: int, start: dict[str, Any] | None, since_iso: str | None, until_iso: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    condition = "gsi1pk = :p"
    vals: dict[str, Any] = {"p": keys.EXECUTIONS_PARTITION}
    if since_iso and until_iso:
        condition += " AND gsi1sk BETWEEN :a AND :b"
        vals |= {"a": since_iso, "b": until_iso + "~"}
    elif since_iso:
        condition += " AND gsi1sk >= :a"
        vals["a"] = since_iso
    elif until_iso:
        condition += " AND gsi1sk <= :b"
        vals["b"] = until_iso + "~"
    kwargs: dict[str, Any] = {
        "IndexName": keys.EXECUTIONS_INDEX,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": codec.values(**vals),
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if start:
        kwargs["ExclusiveStartKey"] = start
    return table.query(**kwargs)


def with_run_time(table: Table, from_ts: float, to_ts: float, *, limit: int) -> list[dict[str, Any]]:
    """Executions of every destination with a run time in [from, to], soonest first, at most
    ``limit``: read from the run-time index, one UTC day at a time, then the items themselves."""
    found: list[dict[str, str]] = []
    first, last = iso(from_ts), iso(to_ts)
    day = datetime.fromtimestamp(from_ts, UTC).date()
    while len(found) < limit and day.isoformat() <= last[:10]:
        page, _ = table.query(
            IndexName=keys.RUN_TIMES_INDEX,
            KeyConditionExpression="gsi3pk = :p AND gsi3sk BETWEEN :a AND :b",
            ExpressionAttributeValues=codec.values(
                p=keys.run_day_partition(day.isoformat()), a=first, b=last + "~"
            ),
            Limit=limit - len(found),
        )
        found += page
        day += timedelta(days=1)
    items = {(i["pk"], i["sk"]): i for i in table.get_many([{"pk": k["pk"], "sk": k["sk"]} for k in found])}
    return [items[(k["pk"], k["sk"])] for k in found if (k["pk"], k["sk"]) in items]
