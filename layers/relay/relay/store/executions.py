"""Executions and their chunks: written once at accept time, read by the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relay.store import codec, keys
from relay.store.table import MAX_TRANSACTION_ITEMS, ConditionFailed, Table, TransactionCancelled

# The API lists chunks without their profiles (they can be 50 x a few KB each).
CHUNK_SUMMARY_FIELDS = (
    "sk, seq, #status, profile_count, batch_id, batch_uuid, schedule_uuid, #error, attempts, "
    "start_shifted, sent_start_at, sent_at, claimed_at, lane"
)


class ExecutionExists(Exception):
    def __init__(self, existing: dict[str, Any]) -> None:
        super().__init__(existing.get("execution_id"))
        self.existing = existing


def create(table: Table, execution: dict[str, Any], chunks: Sequence[dict[str, Any]]) -> None:
    """Write the execution (iff new) and its chunks; a retry after a crash completes the chunks.

    The first transaction carries the execution with ``attribute_not_exists`` and as many chunks
    as fit; if the execution exists, ExecutionExists is raised with what is stored.
    """
    head = list(chunks[: MAX_TRANSACTION_ITEMS - 1])
    operations = [{"Put": {"Item": codec.dump(execution), "ConditionExpression": "attribute_not_exists(pk)"}}]
    operations += [_put_new(c) for c in head]
    try:
        table.transact(operations)
    except TransactionCancelled as cancelled:
        if 0 in cancelled.failed_at():
            existing = table.get(keys.execution(execution["execution_id"]))
            raise ExecutionExists(existing or {}) from cancelled
        raise
    put_chunks(table, chunks[len(head) :])


def put_chunks(table: Table, chunks: Sequence[dict[str, Any]]) -> None:
    """Write chunks that may already exist (resume): existing ones are left as they are."""
    for start in range(0, len(chunks), MAX_TRANSACTION_ITEMS):
        part = chunks[start : start + MAX_TRANSACTION_ITEMS]
        try:
            table.transact([_put_new(c) for c in part])
        except TransactionCancelled:
            for item in part:
                try:
                    table.put(item, condition="attribute_not_exists(pk)")
                except ConditionFailed:
                    continue


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


def chunk_summaries(table: Table, execution_id: str) -> list[dict[str, Any]]:
    return list(
        table.query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :chunk)",
            ExpressionAttributeValues=codec.values(pk=f"EXEC#{execution_id}", chunk="CHUNK#"),
            ProjectionExpression=CHUNK_SUMMARY_FIELDS,
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ConsistentRead=True,
        )
    )


def pending_chunk_keys(table: Table, execution_id: str) -> list[dict[str, Any]]:
    return [
        c
        for c in table.query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :chunk)",
            ExpressionAttributeValues=codec.values(pk=f"EXEC#{execution_id}", chunk="CHUNK#"),
            ProjectionExpression="pk, sk, #status, profile_count, group_id",
            ExpressionAttributeNames={"#status": "status"},
            ConsistentRead=True,
        )
        if c["status"] == "pending"
    ]


def cancel_chunk(table: Table, execution_id: str, sk: str, group_id: str, profiles: int, now: float) -> bool:
    """pending -> cancelled, with the execution's counter, in one transaction; False if it moved on."""
    try:
        table.transact(
            [
                {
                    "Update": {
                        "Key": codec.dump({"pk": f"EXEC#{execution_id}", "sk": sk}),
                        "UpdateExpression": "SET #status = :cancelled, finished_at = :now "
                        "REMOVE gsi2pk, gsi2sk",
                        "ConditionExpression": "#status = :pending",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": codec.values(
                            cancelled="cancelled", pending="pending", now=now
                        ),
                    }
                },
                {
                    "Update": {
                        "Key": codec.dump(keys.execution(execution_id)),
                        "UpdateExpression": "ADD chunks_cancelled :one, profiles_cancelled :n "
                        "SET updated_at = :now",
                        "ExpressionAttributeValues": codec.values(one=1, n=profiles, now=now),
                    }
                },
                {
                    "Update": {
                        "Key": codec.dump(keys.group_state(group_id)),
                        "UpdateExpression": "ADD pending_profiles :minus",
                        "ExpressionAttributeValues": codec.values(minus=-profiles),
                    }
                },
            ]
        )
    except TransactionCancelled:
        return False
    return True


def mark_cancel_requested(table: Table, execution_id: str, now: float) -> None:
    table.update(
        keys.execution(execution_id),
        "SET cancel_requested_at = :now, updated_at = :now",
        values=codec.values(now=now),
    )


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
