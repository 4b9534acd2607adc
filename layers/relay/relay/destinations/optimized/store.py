"""Dispatch state: group wake flags, pending chunks, claiming a batch with its rate-limit slot.

Every transition is a conditional write, so a chunk that was claimed or sent can never be claimed
or sent again, whatever SQS redelivers or however many dispatchers run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.clock import iso
from relay.core.limiter.log_store import write_log_operation
from relay.core.limiter.sliding_log import Log
from relay.core.store import codec, keys
from relay.core.store.table import (
    MAX_TRANSACTION_ITEMS,
    ConditionFailed,
    Table,
    TransactionCancelled,
    update_operation,
)

logger = Logger(child=True)


@dataclass
class PendingChunk:
    """A chunk as the pending index shows it; ``profiles``/``schedule`` are loaded once claimed."""

    execution_id: str
    seq: int
    group_id: str
    lane: str
    size: int
    created_at: float
    gsi2sk: str
    attempts: int = 0
    batch_id: str | None = None
    claimed_at: float | None = None
    first_failed_at: float | None = None  # loaded with the contents (not in the index)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    schedule: dict[str, Any] | None = None

    @property
    def key(self) -> dict[str, str]:
        return keys.chunk(self.execution_id, self.seq)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> PendingChunk:
        return cls(
            execution_id=item["execution_id"],
            seq=item["seq"],
            group_id=item["group_id"],
            lane=item["lane"],
            size=item["profile_count"],
            created_at=item["created_at"],
            gsi2sk=item["gsi2sk"],
            attempts=item.get("attempts", 0),
            batch_id=item.get("batch_id"),
            claimed_at=float(item["claimed_at"]) if "claimed_at" in item else None,
            profiles=json.loads(item["profiles_json"]) if "profiles_json" in item else [],
            schedule=item.get("schedule"),
        )


@dataclass
class ClaimedBatch:
    """Chunks claimed together under one batch id: they go upstream as one request."""

    batch_id: str
    chunks: list[PendingChunk]

    @property
    def profiles(self) -> int:
        return sum(c.size for c in self.chunks)


@dataclass
class ChunkResult:
    """What happened to one chunk of a batch (the fields to SET on it)."""

    chunk: PendingChunk
    batch_id: str
    status: str  # sent | failed | ambiguous | dead_lettered
    fields: dict[str, Any] = field(default_factory=dict)


# --- Group wake state -----------------------------------------------------------------------------


def read_group(table: Table, group_id: str) -> dict[str, Any]:
    return table.get(keys.group_state(group_id)) or {}


def arm(table: Table, group_id: str, added_profiles: int, now: float) -> tuple[bool, int]:
    """Record new work for a group, before the work itself is written: a group that has work is
    always armed, and an armed group is in the awaiting-wake-up index (due now, if it was not
    armed), so a wake-up lost to a crash is found there. Returns (was_armed, pending before)."""
    old = table.update(
        keys.group_state(group_id),
        "SET armed = :t, last_work_at = :now, group_id = :g, wake_due_at = if_not_exists(wake_due_at, :now), "
        "gsi2pk = :awaiting, gsi2sk = if_not_exists(gsi2sk, :due) ADD work_version :one, pending_profiles :n",
        values=codec.values(
            t=True,
            now=now,
            one=1,
            n=added_profiles,
            g=group_id,
            awaiting=keys.awaiting_wakeup_partition(group_id),
            due=keys.awaiting_wakeup_sort(iso(now), group_id),
        ),
        returns="ALL_OLD",
    )
    return bool(old.get("armed")), int(old.get("pending_profiles", 0))


def expect_wakeup(table: Table, group_id: str, due: float) -> None:
    """A wake-up for the group is about to be queued, due at ``due``: written before the send, so
    that if the send never happens the group turns up overdue for the reconciler."""
    table.update(
        keys.group_state(group_id),
        "SET armed = :t, group_id = :g, wake_due_at = :due, gsi2pk = :awaiting, gsi2sk = :sort",
        values=codec.values(
            t=True,
            g=group_id,
            due=due,
            awaiting=keys.awaiting_wakeup_partition(group_id),
            sort=keys.awaiting_wakeup_sort(iso(due), group_id),
        ),
    )


def woken(table: Table, execution_id: str) -> None:
    """The execution's group is armed and woken: its outbox entry is done."""
    table.update(keys.execution(execution_id), "REMOVE gsi2pk, gsi2sk")


def overdue_wakeups(table: Table, due_before: float, limit: int = 100) -> list[dict[str, Any]]:
    """What waits for a wake-up due before ``due_before``: groups whose expected wake-up never
    disarmed them, and executions whose accept died before waking their group (outbox); every
    shard read, oldest first."""
    items: list[dict[str, Any]] = []
    for partition in keys.awaiting_wakeup_partitions():
        found, _ = table.query(
            IndexName=keys.WAITING_INDEX,
            KeyConditionExpression="gsi2pk = :p AND gsi2sk < :before",
            ExpressionAttributeValues=codec.values(
                p=partition, before=keys.awaiting_wakeup_sort(iso(due_before), "")
            ),
            Limit=limit,
        )
        items += found
    return sorted(items, key=lambda item: str(item["gsi2sk"]))[:limit]


def disarm(table: Table, group_id: str, work_version: int) -> bool:
    """Clear the wake flag iff no work arrived since ``work_version`` was read."""
    try:
        table.update(
            keys.group_state(group_id),
            "SET armed = :f REMOVE wake_due_at, gsi2pk, gsi2sk",
            values=codec.values(f=False, v=work_version),
            condition="attribute_not_exists(work_version) OR work_version = :v",
        )
    except ConditionFailed:
        return False
    return True


# --- Pending chunks -------------------------------------------------------------------------------


def pending(table: Table, group_id: str, limit: int) -> list[PendingChunk]:
    items, _ = table.query(
        IndexName=keys.WAITING_INDEX,
        KeyConditionExpression="gsi2pk = :p",
        ExpressionAttributeValues=codec.values(p=keys.pending_partition(group_id)),
        Limit=limit,
    )
    return [PendingChunk.from_item(i) for i in items if i.get("status") == "pending"]


def load_contents(table: Table, batches: Sequence[ClaimedBatch]) -> None:
    """Fill in the profiles and schedule of claimed chunks (one BatchGetItem)."""
    chunks = [c for b in batches for c in b.chunks]
    found = {(i["execution_id"], i["seq"]): i for i in table.get_many([c.key for c in chunks])}
    for c in chunks:
        item = found[(c.execution_id, c.seq)]
        c.profiles = json.loads(item["profiles_json"])
        c.schedule = item.get("schedule")
        c.first_failed_at = float(item["first_failed_at"]) if "first_failed_at" in item else None


def claim(
    table: Table,
    batches: Sequence[ClaimedBatch],
    logs: dict[str, Log],
    now: float,
    *,
    expires_at: int,
) -> list[ClaimedBatch]:
    """Take the rate-limit slots and the chunks of the batches; returns the batches claimed.

    The slots and the first batches' chunks go in ONE transaction: all or none. It raises
    TransactionCancelled when a limiter log moved (another dispatcher took a slot) or a chunk is
    no longer pending (claimed elsewhere, cancelled); reasons 0..len(logs)-1 are logs. Batches
    that do not fit in that transaction (single-profile chunks: 50 items a batch) are claimed in
    transactions of their own after it; one that loses a race is left out of the answer and its
    slot goes unused - a slot wasted, never one over the limit.
    """
    log_ops = [write_log_operation(name, log, expires_at=expires_at) for name, log in logs.items()]
    rounds: list[list[ClaimedBatch]] = [[]]
    used = len(log_ops) + 1  # the logs and the group counter of the first transaction
    for batch in batches:
        if rounds[-1] and used + len(batch.chunks) > MAX_TRANSACTION_ITEMS:
            rounds.append([])
            used = 1  # a later transaction's group counter
        rounds[-1].append(batch)
        used += len(batch.chunks)
    table.transact(log_ops + _claim_operations(rounds[0], now))
    claimed = list(rounds[0])
    for later in rounds[1:]:
        try:
            table.transact(_claim_operations(later, now))
        except TransactionCancelled:
            continue  # lost a race: those chunks are someone else's
        except Exception:  # the slots are taken: send what is claimed rather than nothing
            logger.warning("claiming further batches failed; sending those already claimed", exc_info=True)
            break
        claimed += later
    return claimed


def _claim_operations(batches: Sequence[ClaimedBatch], now: float) -> list[dict[str, Any]]:
    operations: list[dict[str, Any]] = []
    for batch in batches:
        for c in batch.chunks:
            operations.append(
                update_operation(
                    c.key,
                    "SET #status = :sending, batch_id = :b, claimed_at = :now, gsi2pk = :claimed",
                    values=codec.values(
                        sending="sending",
                        pending="pending",
                        b=batch.batch_id,
                        now=now,
                        claimed=keys.sending_partition(c.group_id),
                    ),
                    names={"#status": "status"},
                    condition="#status = :pending",
                )
            )
    operations.append(
        update_operation(
            keys.group_state(batches[0].chunks[0].group_id),
            "ADD pending_profiles :minus",
            values=codec.values(minus=-sum(b.profiles for b in batches)),
        )
    )
    return operations


def finish(table: Table, results: Sequence[ChunkResult], now: float) -> None:
    """Move claimed chunks to their final state and count them on their executions, atomically
    per execution (a packed batch may hold chunks of many executions)."""
    by_execution: dict[str, list[ChunkResult]] = defaultdict(list)
    for r in results:
        by_execution[r.chunk.execution_id].append(r)
    operations: list[dict[str, Any]] = []
    for execution_id, rs in by_execution.items():
        group_ops = [_finish_chunk(r, now) for r in rs]
        group_ops.append(_count_on_execution(execution_id, rs, now))
        if len(operations) + len(group_ops) > MAX_TRANSACTION_ITEMS:
            table.transact(operations)
            operations = []
        operations += group_ops
    if operations:
        table.transact(operations)


def _finish_chunk(result: ChunkResult, now: float) -> dict[str, Any]:
    # Every way a claimed chunk finishes follows a request (or one that may have been made): it
    # counts, so a chunk sent at the first try shows 1 attempt (429s are not counted: not sent).
    fields = {
        "status": result.status,
        "finished_at": now,
        "attempts": result.chunk.attempts + 1,
        **result.fields,
    }
    names = {f"#f{i}": name for i, name in enumerate(fields)}
    vals = {f"v{i}": v for i, v in enumerate(fields.values())}
    assignments = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
    return update_operation(
        result.chunk.key,
        f"SET {assignments} REMOVE gsi2pk, gsi2sk",
        values=codec.values(**vals, sending="sending", b=result.batch_id),
        names={**names, "#st": "status"},
        condition="#st = :sending AND batch_id = :b",
    )


def _count_on_execution(execution_id: str, results: Sequence[ChunkResult], now: float) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    for r in results:
        counts[f"chunks_{r.status}"] += 1
        counts["profiles_" + r.status] += r.chunk.size
        if r.fields.get("start_shifted"):
            counts["chunks_start_shifted"] += 1
    adds = ", ".join(f"{name} :{name}" for name in counts)
    return update_operation(
        keys.execution(execution_id),
        f"ADD {adds} SET updated_at = :now, "
        "first_finished_at = if_not_exists(first_finished_at, :now), last_finished_at = :now",
        values=codec.values(**counts, now=now),
    )


def sending(table: Table, group_id: str) -> list[PendingChunk]:
    """Chunks of the group claimed by a dispatcher and not yet finished (sent, failed, released)."""
    items, _ = table.query(
        IndexName=keys.WAITING_INDEX,
        KeyConditionExpression="gsi2pk = :p",
        FilterExpression="#status = :sending",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues=codec.values(p=keys.sending_partition(group_id), sending="sending"),
    )
    return [PendingChunk.from_item(i) for i in items]


def release(
    table: Table,
    batch_id: str,
    chunks: Sequence[PendingChunk],
    *,
    count_attempt: bool,
    error: dict | None,
    now: float = 0.0,
) -> None:
    """Put claimed chunks back in the pending queue (429, or not sent at all). A counted attempt
    (a failure) stamps the chunk's first failure, from which its retry time is measured."""
    group_id = chunks[0].group_id
    operations: list[dict[str, Any]] = []
    for c in chunks:
        vals = codec.values(
            pending="pending",
            sending="sending",
            b=batch_id,
            p=keys.pending_partition(c.group_id),
            s=c.gsi2sk,
            a=1 if count_attempt else 0,
            e=error or {},
            **({"f": now} if count_attempt else {}),
        )
        first_failed = ", first_failed_at = if_not_exists(first_failed_at, :f)" if count_attempt else ""
        operations.append(
            update_operation(
                c.key,
                f"SET #status = :pending, gsi2pk = :p, gsi2sk = :s, last_error = :e{first_failed} "
                "ADD attempts :a REMOVE batch_id",
                values=vals,
                names={"#status": "status"},
                condition="#status = :sending AND batch_id = :b",
            )
        )
    operations.append(
        update_operation(
            keys.group_state(group_id),
            "ADD pending_profiles :n",
            values=codec.values(n=sum(c.size for c in chunks)),
        )
    )
    table.transact(operations)


def requeue_dead_chunk(table: Table, execution_id: str, seq: int, now: float) -> dict[str, Any] | None:
    """Operator re-drive: a dead-lettered chunk goes back to pending with a fresh attempt count."""
    key = keys.chunk(execution_id, seq)
    item = table.get(key)
    if not item or item.get("status") != "dead_lettered":
        return None
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
                "ADD chunks_dead_lettered :m, profiles_dead_lettered :pm SET updated_at = :now",
                values=codec.values(m=-1, pm=-item["profile_count"], now=now),
            ),
        ]
    )
    return item


# --- Chunks as the API reads and cancels them ------------------------------------------------

# The API lists chunks without their profiles (they can be 50 x a few KB each).
CHUNK_SUMMARY_FIELDS = (
    "sk, seq, #status, profile_count, batch_id, batch_uuid, schedule_uuid, #error, attempts, "
    "start_shifted, sent_start_at, sent_at, claimed_at, lane"
)


def chunk_summaries(table: Table, execution_id: str) -> list[dict[str, Any]]:
    return list(
        table.query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :chunk)",
            ExpressionAttributeValues=codec.values(
                pk=keys.execution_partition(execution_id), chunk=keys.CHUNK_PREFIX
            ),
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
            ExpressionAttributeValues=codec.values(
                pk=keys.execution_partition(execution_id), chunk=keys.CHUNK_PREFIX
            ),
            ProjectionExpression="pk, sk, #status, profile_count, group_id",
            ExpressionAttributeNames={"#status": "status"},
            ConsistentRead=True,
        )
        if c["status"] == "pending"
    ]


def cancel_chunk(table: Table, execution_id: str, sk: str, group_id: str, profiles: int, now: float) -> bool:
    """pending -> cancelled, with the execution's counter, in one transaction; False if the chunk
    moved on (claimed, sent). Any other cancellation (a conflict that outlasted the retries)
    raises TransactionCancelled: it says nothing about the chunk, so it must not read as moved on."""
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
                    "ADD chunks_cancelled :one, profiles_cancelled :n SET updated_at = :now",
                    values=codec.values(one=1, n=profiles, now=now),
                ),
                update_operation(
                    keys.group_state(group_id),
                    "ADD pending_profiles :minus",
                    values=codec.values(minus=-profiles),
                ),
            ]
        )
    except TransactionCancelled as cancelled:
        if 0 in cancelled.failed_at():
            return False
        raise
    return True


def mark_cancel_requested(table: Table, execution_id: str, now: float) -> None:
    table.update(
        keys.execution(execution_id),
        "SET cancel_requested_at = :now, updated_at = :now",
        values=codec.values(now=now),
    )
