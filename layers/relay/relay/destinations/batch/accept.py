"""Accepting profile operations: store the execution and its chunks (iff new), wake the lane.

The one entry point for every producer of profile updates: ``POST /v1/batch/profiles`` after
validation, and the mirroring of Optimized.app results. Operations of any number of executions
wait in the same lane and are packed into the same calls by the dispatcher.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from relay.core.clock import Clock, iso
from relay.core.failpoints import failpoint
from relay.core.http import ApiError
from relay.core.queue import Queue
from relay.core.store import keys
from relay.core.store.table import Table
from relay.destinations.batch import NAME, store
from relay.destinations.batch.settings import BatchSettings
from relay.destinations.batch.wakeups import wake
from relay.executions import store as executions


@dataclass
class AcceptDeps:
    table: Table
    queue: Queue
    settings: BatchSettings
    clock: Clock
    lane: str


# A chunk is one DynamoDB item (at most 400 KB with its other attributes).
MAX_CHUNK_BYTES = 300_000


class OperationTooLarge(ApiError):
    def __init__(self, index: int, size: int) -> None:
        super().__init__(
            413,
            "operation_too_large",
            f"operations[{index}] is {size:,} bytes as JSON; an operation may be at most {MAX_CHUNK_BYTES:,}",
        )


def split(entries: list[dict[str, Any]], size: int, max_bytes: int) -> list[list[dict[str, Any]]]:
    """Entries in input order as chunks of at most ``size`` entries and ``max_bytes`` of JSON."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    used = 0
    for entry in entries:
        length = len(json.dumps(entry, separators=(",", ":"))) + 1
        if length > max_bytes:
            raise OperationTooLarge(int(entry["i"]), length - 1)
        if current and (len(current) >= size or used + length > max_bytes):
            chunks.append(current)
            current, used = [], 0
        current.append(entry)
        used += length
    if current:
        chunks.append(current)
    return chunks


def default_deps() -> AcceptDeps:
    from relay.core import wiring as core
    from relay.core.clock import system_clock
    from relay.destinations.batch import wiring
    from relay.destinations.batch.settings import get_settings

    return AcceptDeps(
        table=core.table(),
        queue=wiring.queue(),
        settings=get_settings(),
        clock=system_clock,
        lane=wiring.lane(),
    )


def answer(execution: dict[str, Any]) -> dict[str, Any]:
    """What the caller is told: ``{execution_id, status, operations, calls}``."""
    return dict(execution["accepted"])


def accept_operations(
    operations: list[dict[str, Any]],
    *,
    execution_id: str,
    origin: str,
    refs: list[str | None] | None = None,
    deps: AcceptDeps | None = None,
) -> dict[str, Any]:
    """Store ``operations`` (Batch's /profiles/update shape, validated by the caller) as a new
    execution ``execution_id`` and wake the dispatcher; ``refs[i]`` is the caller's reference of
    operation i (shown with its partial error). A repeat with an existing id changes nothing and
    answers the existing execution (after completing what a crashed first attempt left).

    Returns ``{execution_id, status, operations, calls}`` (``calls``: how many calls this
    execution needs on its own; packing with others may share them)."""
    if deps is None:
        deps = default_deps()
    if refs is not None and len(refs) != len(operations):
        raise ValueError(f"refs has {len(refs)} entries for {len(operations)} operations")
    table, settings, now = deps.table, deps.settings, deps.clock()
    size = settings.batch_operations_per_call
    created_iso = iso(now)
    expires_at = int(now + settings.execution_ttl_days * 86_400)
    entries = [{"i": i, "ref": refs[i] if refs else None, "op": op} for i, op in enumerate(operations)]
    chunks = [
        store.chunk_item(
            execution_id, seq, deps.lane, part, now=now, created_iso=created_iso, expires_at=expires_at
        )
        for seq, part in enumerate(split(entries, size, MAX_CHUNK_BYTES))
    ]
    accepted = {
        "execution_id": execution_id,
        "status": "queued" if chunks else "completed",
        "operations": len(operations),
        "calls": math.ceil(len(operations) / size),
    }
    execution = {
        **keys.execution(execution_id),
        "kind": "execution",
        "execution_id": execution_id,
        "destination": NAME,
        "group_id": deps.lane,
        "origin": origin,
        "caller": origin,
        "operations_total": len(operations),
        "chunks_total": len(chunks),
        "created_at": now,
        "created_iso": created_iso,
        "updated_at": now,
        "accepted": accepted,
        **keys.executions_listing(execution_id, created_iso),
        # Outbox: "this lane needs a wake-up", written with the work and removed once the lane is
        # armed and woken; a crash in between leaves it for the reconciler.
        "gsi2pk": keys.due_partition(NAME, execution_id),
        "gsi2sk": keys.due_sort(created_iso, execution_id),
        "expires_at": expires_at,
    }
    if not chunks:
        execution.pop("gsi2pk"), execution.pop("gsi2sk")
    try:
        executions.create(table, execution, chunks)
    except executions.ExecutionExists as exists:
        existing = exists.existing
        if existing.get("chunks_total") and existing.get("group_id"):
            # A repeat may follow a first attempt that died half-way: finish writing its chunks
            # (only if they are this request's), then wake the lane whatever its flag says (a
            # duplicate wake-up costs one empty look; a missing one strands the operations).
            if int(existing.get("operations_total", -1)) == len(operations):
                executions.put_chunks(table, chunks)
            store.arm(table, existing["group_id"], now)
            wake(deps.queue)
            store.woken(table, execution_id)
        return answer(existing)
    if not chunks:
        return accepted
    failpoint("batch.accept.after_store")
    was_armed = store.arm(table, deps.lane, now)
    failpoint("batch.accept.after_arm")
    if not was_armed:
        wake(deps.queue)
        failpoint("batch.accept.after_wake")
    store.woken(table, execution_id)
    return accepted
