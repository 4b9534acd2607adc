"""Profile-update dispatch state: the project's lane (its wake flag), pending chunks of operations,
claiming them for a call, recording each call's outcome.

A chunk holds up to 200 operations of one execution, in the caller's order, each with its index
in the execution and its ``ref``. Chunks of any executions are packed into one call. Every
transition is a conditional write, so an operation that was claimed or sent can never be claimed
or sent again, whatever SQS redelivers or however many dispatchers run.

The index (gsi2) projects a fixed set of attribute names shared with the Optimized.app path:
``group_id`` holds the lane, ``profile_count`` the chunk's operations, ``batch_id`` the call id.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.clock import iso
from relay.core.store import codec, keys
from relay.core.store.table import (
    MAX_TRANSACTION_ITEMS,
    ConditionFailed,
    Table,
    TransactionCancelled,
    update_operation,
)

DESTINATION = "batch"

logger = Logger(child=True)


@dataclass
class PendingChunk:
    """A chunk as the pending index shows it; ``operations`` are loaded once claimed."""

    execution_id: str
    seq: int
    lane: str
    size: int
    created_at: float
    gsi2sk: str
    attempts: int = 0
    call_id: str | None = None
    claimed_at: float | None = None
    first_failed_at: float | None = None
    # [{"i": index in the execution, "ref": caller's ref or None, "op": the Batch operation}]
    operations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> dict[str, str]:
        return keys.chunk(self.execution_id, self.seq)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> PendingChunk:
        return cls(
            execution_id=item["execution_id"],
            seq=int(item["seq"]),
            lane=item["group_id"],
            size=int(item["profile_count"]),
            created_at=float(item["created_at"]),
            gsi2sk=item.get("gsi2sk", ""),
            attempts=int(item.get("attempts", 0)),
            call_id=item.get("batch_id"),
            claimed_at=float(item["claimed_at"]) if "claimed_at" in item else None,
            operations=json.loads(item["operations_json"]) if "operations_json" in item else [],
        )


@dataclass
class ChunkResult:
    """What happened to one chunk of a call (the fields to SET on it) and its operations' counts."""

    chunk: PendingChunk
    call_id: str
    status: str  # sent | failed | ambiguous | dead_lettered
    delivered: int = 0
    failed: int = 0
    fields: dict[str, Any] = field(default_factory=dict)


def chunk_item(
    execution_id: str,
    seq: int,
    lane: str,
    operations: list[dict[str, Any]],
    *,
    now: float,
    created_iso: str,
    expires_at: int,
) -> dict[str, Any]:
    return {
        **keys.chunk(execution_id, seq),
        "kind": "chunk",
        "destination": DESTINATION,
        "execution_id": execution_id,
        "seq": seq,
        "group_id": lane,
        # One JSON string, not a DynamoDB map: never queried inside, far cheaper to (de)serialise.
        "operations_json": json.dumps(operations, separators=(",", ":")),
        "profile_count": len(operations),
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "created_iso": created_iso,
        "gsi2pk": keys.pending_partition(lane),
        "gsi2sk": keys.pending_sort(created_iso, execution_id, seq),
        "expires_at": expires_at,
    }


# --- The lane's wake state ------------------------------------------------------------------------


def read_lane(table: Table, lane: str) -> dict[str, Any]:
    return table.get(keys.group_state(lane)) or {}


def arm(table: Table, lane: str, now: float) -> bool:
    """Record new work on the lane: it is armed (a wake-up is on its way), and while armed it is
    in the awaiting-wake-up index, so a wake-up lost to a crash is found. Returns was_armed."""
    old = table.update(
        keys.group_state(lane),
        "SET armed = :t, last_work_at = :now, group_id = :lane, "
        "wake_due_at = if_not_exists(wake_due_at, :now), gsi2pk = :awaiting, "
        "gsi2sk = if_not_exists(gsi2sk, :due) ADD work_version :one",
        values=codec.values(
            t=True,
            now=now,
            one=1,
            lane=lane,
            awaiting=keys.due_partition(DESTINATION, lane),
            due=keys.due_sort(iso(now), lane),
        ),
        returns="ALL_OLD",
    )
    return bool(old.get("armed"))


def expect_wakeup(table: Table, lane: str, due: float) -> None:
    """A wake-up is about to be queued, due at ``due``: written before the send, so that if the
    send never happens the lane turns up overdue for the reconciler."""
    table.update(
        keys.group_state(lane),
        "SET armed = :t, group_id = :lane, wake_due_at = :due, gsi2pk = :awaiting, gsi2sk = :sort",
        values=codec.values(
            t=True,
            lane=lane,
            due=due,
            awaiting=keys.due_partition(DESTINATION, lane),
            sort=keys.due_sort(iso(due), lane),
        ),
    )


def disarm(table: Table, lane: str, work_version: int) -> bool:
    """Clear the wake flag iff no work arrived since ``work_version`` was read."""
    try:
        table.update(
            keys.group_state(lane),
            "SET armed = :f REMOVE wake_due_at, gsi2pk, gsi2sk",
            values=codec.values(f=False, v=work_version),
            condition="attribute_not_exists(work_version) OR work_version = :v",
        )
    except ConditionFailed:
        return False
    return True


def woken(table: Table, execution_id: str) -> None:
    """The execution's lane is armed and woken: its outbox entry is done."""
    table.update(keys.execution(execution_id), "REMOVE gsi2pk, gsi2sk")


def overdue(table: Table, due_before: float, limit: int = 100) -> list[dict[str, Any]]:
    """Lanes whose expected wake-up never came, and executions whose accept died before waking
    their lane (outbox), due before ``due_before``; every shard read, oldest first."""
    items: list[dict[str, Any]] = []
    for partition in keys.due_partitions(DESTINATION):
        found, _ = table.query(
            IndexName=keys.WAITING_INDEX,
            KeyConditionExpression="gsi2pk = :p AND gsi2sk < :before",
            ExpressionAttributeValues=codec.values(p=partition, before=keys.due_sort(iso(due_before), "")),
            Limit=limit,
        )
        items += found
    return sorted(items, key=lambda item: str(item["gsi2sk"]))[:limit]


# --- Pending chunks -------------------------------------------------------------------------------


def pending(table: Table, lane: str, limit: int) -> list[PendingChunk]:
    items, _ = table.query(
        IndexName=keys.WAITING_INDEX,
        KeyConditionExpression="gsi2pk = :p",
        ExpressionAttributeValues=codec.values(p=keys.pending_partition(lane)),
        Limit=limit,
    )
    return [PendingChunk.from_item(i) for i in items if i.get("status") == "pending"]


def load_operations(table: Table, chunks: Sequence[PendingChunk]) -> None:
    """Fill in the operations of claimed chunks (BatchGetItem)."""
    found = {(i["execution_id"], int(i["seq"])): i for i in table.get_many([c.key for c in chunks])}
    for c in chunks:
        item = found[(c.execution_id, c.seq)]
        c.operations = json.loads(item["operations_json"])
        c.first_failed_at = float(item["first_failed_at"]) if "first_failed_at" in item else None


def claim(table: Table, call_id: str, chunks: Sequence[PendingChunk], now: float) -> list[PendingChunk]:
    """pending -> sending under ``call_id``, in transactions of up to 100 chunks; a chunk someone
    else took (or cancelled) meanwhile is left out. Returns the chunks claimed."""
    claimed: list[PendingChunk] = []
    for start in range(0, len(chunks), MAX_TRANSACTION_ITEMS):
        part = list(chunks[start : start + MAX_TRANSACTION_ITEMS])
        try:
            table.transact([_claim_operation(c, call_id, now) for c in part])
            claimed += part
            continue
        except TransactionCancelled:
            pass
        # A lost race on one chunk must not cost the others their place in the call; and a
        # transaction applied whose answer was lost (the SDK retried it) shows as ours here.
        mine = _claimed_by(table, call_id, part)
        for c in part:
            if (c.execution_id, c.seq) in mine:
                claimed.append(c)
                continue
            try:
                table.transact([_claim_operation(c, call_id, now)])
            except TransactionCancelled:
                continue
            claimed.append(c)
    for c in claimed:
        c.call_id, c.claimed_at = call_id, now
    return claimed


def _claimed_by(table: Table, call_id: str, chunks: Sequence[PendingChunk]) -> set[tuple[str, int]]:
    found = table.get_many([c.key for c in chunks])
    return {
        (i["execution_id"], int(i["seq"]))
        for i in found
        if i.get("status") == "sending" and i.get("batch_id") == call_id
    }


def _claim_operation(c: PendingChunk, call_id: str, now: float) -> dict[str, Any]:
    return update_operation(
        c.key,
        "SET #status = :sending, batch_id = :b, claimed_at = :now, gsi2pk = :claimed",
        values=codec.values(
            sending="sending", pending="pending", b=call_id, now=now, claimed=keys.sending_partition(c.lane)
        ),
        names={"#status": "status"},
        condition="#status = :pending",
    )


def finish(table: Table, results: Sequence[ChunkResult], now: float) -> None:
    """Move claimed chunks to their final state and count them on their executions, atomically
    per execution (a call may hold chunks of many executions)."""
    by_execution: dict[str, list[ChunkResult]] = defaultdict(list)
    for r in results:
        by_execution[r.chunk.execution_id].append(r)
    batch: list[list[dict[str, Any]]] = []
    for execution_id, rs in by_execution.items():
        group = [_finish_chunk(r, now) for r in rs] + [_count_on_execution(execution_id, rs, now)]
        if batch and sum(map(len, batch)) + len(group) > MAX_TRANSACTION_ITEMS:
            _finish_groups(table, batch)
            batch = []
        batch.append(group)
    if batch:
        _finish_groups(table, batch)


def _finish_groups(table: Table, groups: list[list[dict[str, Any]]]) -> None:
    """One transaction for several executions' groups; if it is cancelled by a condition, each
    group alone. A group whose chunks are no longer ``sending`` under this call was recorded
    already - by a transaction whose answer was lost and that the SDK retried, or by the
    settling of abandoned chunks - and is left as it is: each outcome is counted once."""
    try:
        table.transact([op for group in groups for op in group])
        return
    except TransactionCancelled as cancelled:
        if len(groups) == 1:
            _recorded_already(cancelled)
            return
    for group in groups:
        try:
            table.transact(group)
        except TransactionCancelled as cancelled:
            _recorded_already(cancelled)


def _recorded_already(cancelled: TransactionCancelled) -> None:
    if not cancelled.failed_at():
        raise cancelled
    logger.warning(
        "chunks of a call were recorded already; left as they are", extra={"reasons": cancelled.reasons[:10]}
    )


def _finish_chunk(result: ChunkResult, now: float) -> dict[str, Any]:
    fields = {"status": result.status, "finished_at": now, **result.fields}
    names = {f"#f{i}": name for i, name in enumerate(fields)}
    vals = {f"v{i}": v for i, v in enumerate(fields.values())}
    assignments = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
    return update_operation(
        result.chunk.key,
        f"SET {assignments} REMOVE gsi2pk, gsi2sk",
        values=codec.values(**vals, sending="sending", b=result.call_id),
        names={**names, "#st": "status"},
        condition="#st = :sending AND batch_id = :b",
    )


def _count_on_execution(execution_id: str, results: Sequence[ChunkResult], now: float) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    for r in results:
        counts[f"chunks_{r.status}"] += 1
        if r.status == "sent":
            counts["operations_delivered"] += r.delivered
            counts["operations_failed"] += r.failed
        else:
            counts[f"operations_{r.status}"] += r.chunk.size
    adds = ", ".join(f"{name} :{name}" for name in counts)
    return update_operation(
        keys.execution(execution_id),
        f"ADD {adds} SET updated_at = :now, "
        "first_finished_at = if_not_exists(first_finished_at, :now), last_finished_at = :now",
        values=codec.values(**counts, now=now),
    )


def sending(table: Table, lane: str) -> list[PendingChunk]:
    """Chunks claimed by a dispatcher and not yet finished or released."""
    items = table.query_all(
        IndexName=keys.WAITING_INDEX,
        KeyConditionExpression="gsi2pk = :p",
        FilterExpression="#status = :sending",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues=codec.values(p=keys.sending_partition(lane), sending="sending"),
    )
    return [PendingChunk.from_item(i) for i in items]


def release(
    table: Table,
    call_id: str,
    chunks: Sequence[PendingChunk],
    *,
    count_attempt: bool,
    error: dict[str, Any] | None,
    now: float,
) -> None:
    """Put claimed chunks back in the pending queue (429, 5xx, never sent), in their old place.
    A counted attempt (a failure) stamps the first failure, from which retries are timed."""
    for start in range(0, len(chunks), MAX_TRANSACTION_ITEMS - 1):
        part = chunks[start : start + MAX_TRANSACTION_ITEMS - 1]
        operations = []
        for c in part:
            first_failed = ", first_failed_at = if_not_exists(first_failed_at, :f)" if count_attempt else ""
            operations.append(
                update_operation(
                    c.key,
                    f"SET #status = :pending, gsi2pk = :p, gsi2sk = :s, last_error = :e{first_failed} "
                    "ADD attempts :a REMOVE batch_id",
                    values=codec.values(
                        pending="pending",
                        sending="sending",
                        b=call_id,
                        p=keys.pending_partition(c.lane),
                        s=c.gsi2sk,
                        a=1 if count_attempt else 0,
                        e=error or {},
                        **({"f": now} if count_attempt else {}),
                    ),
                    names={"#status": "status"},
                    condition="#status = :sending AND batch_id = :b",
                )
            )
        table.transact(operations)


def requeue_dead_chunk(table: Table, execution_id: str, seq: int) -> dict[str, Any] | None:
    """Operator re-drive: a dead-lettered chunk goes back to pending with a fresh attempt count."""
    key = keys.chunk(execution_id, seq)
    item = table.get(key)
    if not item or item.get("status") != "dead_lettered":
        return None
    size = int(item["profile_count"])
    table.transact(
        [
            update_operation(
                key,
                "SET #status = :pending, gsi2pk = :p, gsi2sk = :s, attempts = :zero "
                "REMOVE batch_id, first_failed_at",
                values=codec.values(
                    pending="pending",
                    dead="dead_lettered",
                    p=keys.pending_partition(item["group_id"]),
                    s=keys.pending_sort(item["created_iso"], execution_id, seq),
                    zero=0,
                ),
                names={"#status": "status"},
                condition="#status = :dead",
            ),
            update_operation(
                keys.execution(execution_id),
                "ADD chunks_dead_lettered :minus_one, operations_dead_lettered :minus",
                values=codec.values(minus_one=-1, minus=-size),
            ),
        ]
    )
    return item


# --- Reading and cancelling -----------------------------------------------------------------------


def chunk_items(table: Table, execution_id: str, *, projection: str | None = None) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :chunk)",
        "ExpressionAttributeValues": codec.values(
            pk=keys.execution_partition(execution_id), chunk=keys.CHUNK_PREFIX
        ),
        "ConsistentRead": True,
    }
    if projection:
        kwargs["ProjectionExpression"] = projection
        kwargs["ExpressionAttributeNames"] = {"#status": "status"}
    return list(table.query_all(**kwargs))


def cancel_chunk(table: Table, execution_id: str, sk: str, size: int, now: float) -> bool:
    """pending -> cancelled with the execution's counters, in one transaction; False if the chunk
    moved on (claimed, sent)."""
    try:
        table.transact(
            [
                update_operation(
                    {"pk": keys.execution_partition(execution_id), "sk": sk},
                    "SET #status = :cancelled, finished_at = :now REMOVE gsi2pk, gsi2sk",
                    values=codec.values(cancelled="cancelled", pending="pending", now=now),
                    names={"#status": "status"},
                    condition="#status = :pending",
                ),
                update_operation(
                    keys.execution(execution_id),
                    "ADD chunks_cancelled :one, operations_cancelled :n SET updated_at = :now",
                    values=codec.values(one=1, n=size, now=now),
                ),
            ]
        )
    except TransactionCancelled as cancelled:
        if 0 in cancelled.failed_at():
            return False
        raise
    return True
