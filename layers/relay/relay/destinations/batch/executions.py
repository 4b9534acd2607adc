"""Batch executions as the API shows them (status derived from counters kept by conditional
writes, each partial error mapped to the caller's operation) and cancelled chunk by chunk."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from relay.core.clock import iso
from relay.core.failpoints import failpoint
from relay.core.http import ApiError
from relay.core.models import Model
from relay.core.store.table import Table, TransactionCancelled
from relay.destinations.batch import store
from relay.executions import store as executions
from relay.executions.models import ChunkCounts, ExecutionView, ProfileCounts
from relay.executions.registry import NotCancellable

FINISHED = ("sent", "failed", "ambiguous", "dead_lettered", "cancelled")
BatchStatus = Literal["queued", "dispatching", "completed", "partially_failed", "failed", "cancelled"]


class OperationCounts(Model):
    total: int
    pending: int = Field(description="Waiting for the updates limiter (or being sent right now)")
    delivered: int
    failed: int = Field(description="Refused by Batch: a partial error, or the whole call (400/401)")
    ambiguous: int = Field(description="Timed out after sending: may or may not be applied")
    dead_lettered: int = Field(
        description="Gave up after BATCH_RETRY_FOR_S; re-drive with `relay dlq redrive`"
    )
    cancelled: int


class OperationError(Model):
    """One operation Batch refused, as the caller sent it (its index in ``operations`` and ref)."""

    index: int
    ref: str | None = None
    category: str | None = None
    reason: str | None = None
    attribute: str | None = None
    status: int | None = Field(None, description="The call's HTTP status when the whole call failed")
    error_code: str | None = None
    error_message: str | None = None


class BatchExecutionView(ExecutionView):
    status: BatchStatus
    operations: OperationCounts
    errors: list[OperationError] | None = Field(
        None, description="Each failed, ambiguous or dead-lettered operation (with details only)"
    )


def derive_status(item: dict[str, Any]) -> str:
    total = int(item.get("operations_total", 0))
    counts = {name: int(item.get(f"operations_{name}", 0)) for name in ("delivered", *FINISHED[1:])}
    finished = sum(counts.values())
    cancelled = counts["cancelled"]
    if finished < total:
        return "dispatching" if finished - cancelled > 0 else "queued"
    if total and cancelled == total:
        return "cancelled"
    if total and counts["failed"] + counts["dead_lettered"] == total - cancelled:
        return "failed"
    if counts["failed"] + counts["dead_lettered"] + counts["ambiguous"]:
        return "partially_failed"
    return "completed"


def _errors(chunk_items: list[dict[str, Any]]) -> list[OperationError]:
    found: list[OperationError] = []
    for c in chunk_items:
        if c.get("errors"):
            found += [OperationError(**e) for e in c["errors"]]
        elif c.get("status") in ("failed", "ambiguous", "dead_lettered") and c.get("error"):
            import json

            for entry in json.loads(c.get("operations_json") or "[]"):
                found.append(OperationError(index=entry["i"], ref=entry.get("ref"), **c["error"]))
    return sorted(found, key=lambda e: e.index)


def view(item: dict[str, Any], chunk_items: list[dict[str, Any]] | None = None) -> BatchExecutionView:
    def count(name: str) -> int:
        return int(item.get(name, 0))

    total_chunks = count("chunks_total")
    total = count("operations_total")
    ops = {name: count(f"operations_{name}") for name in ("delivered", *FINISHED[1:])}
    finished_chunks = sum(count(f"chunks_{s}") for s in FINISHED)
    return BatchExecutionView(
        execution_id=item["execution_id"],
        destination=item["destination"],
        status=derive_status(item),  # type: ignore[arg-type]
        group_id=None,
        operations=OperationCounts(total=total, pending=total - sum(ops.values()), **ops),
        profiles=ProfileCounts(total=total, sent=ops["delivered"], **{k: ops[k] for k in FINISHED[1:]}),
        chunks=ChunkCounts(
            total=total_chunks,
            pending=total_chunks - finished_chunks,
            start_shifted=0,
            **{name: count(f"chunks_{name}") for name in FINISHED},
        ),
        created_at=iso(item["created_at"]),
        updated_at=iso(item.get("updated_at", item["created_at"])),
        first_sent_at=iso(item["first_finished_at"]) if item.get("first_finished_at") else None,
        last_sent_at=iso(item["last_finished_at"]) if item.get("last_finished_at") else None,
        errors=_errors(chunk_items) if chunk_items is not None else None,
    )


def get(table: Table, item: dict[str, Any], *, details: bool) -> BatchExecutionView:
    return view(item, store.chunk_items(table, item["execution_id"]) if details else None)


def cancel(table: Table, item: dict[str, Any], now: float) -> BatchExecutionView:
    """Cancel every chunk not yet claimed for a call; what was sent stays as it is."""
    execution_id = item["execution_id"]
    cancelled = 0
    chunks = store.chunk_items(table, execution_id, projection="pk, sk, #status, profile_count")
    for chunk in chunks:
        if chunk["status"] != "pending":
            continue
        try:
            if store.cancel_chunk(table, execution_id, chunk["sk"], int(chunk["profile_count"]), now):
                cancelled += 1
                failpoint("batch.cancel.after_chunk")
        except TransactionCancelled:
            raise ApiError(
                503,
                "cancel_conflict",
                f"cancelling conflicted with a dispatcher after {cancelled} chunk(s) were cancelled; "
                "send the DELETE again to cancel the rest",
            ) from None
    if cancelled == 0 and derive_status(item) not in ("queued", "dispatching"):
        raise NotCancellable(f"execution is {derive_status(item)}; nothing left to cancel")
    current = executions.get(table, execution_id) or item
    return get(table, current, details=True)
