"""Optimized.app executions as the API shows them (status derived from chunk counters kept by
conditional writes), cancelled (chunk by chunk) and listed as scheduled work."""

from __future__ import annotations

import time
from typing import Any

from relay.core.clock import iso
from relay.core.failpoints import failpoint
from relay.core.http import ApiError
from relay.core.store.table import Table, TransactionCancelled
from relay.destinations.optimized import store
from relay.destinations.optimized.models import ExecutionStatus
from relay.executions import store as executions
from relay.executions.models import (
    COUNTERS,
    ChunkCounts,
    ChunkError,
    ChunkView,
    ExecutionView,
    ProfileCounts,
    ResultCounts,
    ScheduledItem,
)
from relay.executions.registry import NotCancellable

# Where a chunk (and its profiles) can end; each has a counter on the execution.
FINISHED = ("sent", "failed", "ambiguous", "dead_lettered", "cancelled")


class OptimizedExecutionView(ExecutionView):
    status: ExecutionStatus


def derive_status(item: dict[str, Any], now: float | None = None) -> str:
    """The execution's status from its chunk counters (and, once every chunk is sent, the clock:
    a campaign handed upstream to start later is ``scheduled`` until its start_at)."""
    total = int(item.get("chunks_total", 0))
    sent, failed = int(item.get("chunks_sent", 0)), int(item.get("chunks_failed", 0))
    ambiguous, dead = int(item.get("chunks_ambiguous", 0)), int(item.get("chunks_dead_lettered", 0))
    cancelled = int(item.get("chunks_cancelled", 0))
    finished = sent + failed + ambiguous + dead + cancelled
    if finished < total:
        return "dispatching" if finished - cancelled > 0 else "queued"
    if cancelled == total or (cancelled and sent + failed + ambiguous + dead == 0):
        return "cancelled"
    if failed + dead == total - cancelled:
        return "failed"
    if failed + dead + ambiguous:
        return "partially_failed"
    start_at = scheduled_start(item)
    if start_at is not None and start_at > (time.time() if now is None else now):
        return "scheduled"
    return "partially_cancelled" if cancelled else "completed"


def scheduled_start(item: dict[str, Any]) -> float | None:
    """The campaign's start time asked for (epoch seconds), if the trigger had one."""
    start_at = (item.get("schedule") or {}).get("start_at")
    return float(start_at) if start_at is not None else None


def view(item: dict[str, Any], chunk_items: list[dict[str, Any]] | None = None) -> OptimizedExecutionView:
    def count(name: str) -> int:
        return int(item.get(name, 0))

    total = count("chunks_total")
    finished = sum(count(f"chunks_{s}") for s in FINISHED)
    details = None
    if chunk_items is not None:
        details = [
            ChunkView(
                seq=c["seq"],
                profiles=c.get("profile_count", 0),
                status=c["status"],
                batch_uuid=c.get("batch_uuid"),
                schedule_uuid=c.get("schedule_uuid"),
                start_shifted=bool(c.get("start_shifted")),
                sent_start_at=c.get("sent_start_at"),
                sent_at=iso(c["sent_at"]) if c.get("sent_at") else None,
                attempts=c.get("attempts", 0),
                error=ChunkError(**c["error"]) if c.get("error") else _last_error(c),
            )
            for c in chunk_items
        ]
    schedule = item.get("schedule")
    if schedule and schedule.get("start_at") is not None:
        schedule = {**schedule, "start_at": iso(schedule["start_at"])}
    status = derive_status(item)
    start_at = scheduled_start(item)
    return OptimizedExecutionView(
        execution_id=item["execution_id"],
        destination=item["destination"],
        status=status,  # type: ignore[arg-type]
        scheduled_for=iso(start_at) if status == "scheduled" and start_at is not None else None,
        group_id=item.get("group_id"),
        schedule=schedule,
        profiles=ProfileCounts(**{name: count(f"profiles_{name}") for name in ("total", *FINISHED)}),
        chunks=ChunkCounts(
            total=total,
            pending=total - finished,
            start_shifted=count("chunks_start_shifted"),
            **{name: count(f"chunks_{name}") for name in FINISHED},
        ),
        created_at=iso(item["created_at"]),
        updated_at=iso(item.get("updated_at", item["created_at"])),
        first_sent_at=iso(item["first_finished_at"]) if item.get("first_finished_at") else None,
        last_sent_at=iso(item["last_finished_at"]) if item.get("last_finished_at") else None,
        estimated_dispatch_done_at=item.get("estimated_dispatch_done_at") or None,
        warnings=item.get("warnings", []),
        results=ResultCounts(**{name: count(f"results_{name}") for name in COUNTERS}),
        chunk_details=details,
    )


def _last_error(chunk: dict[str, Any]) -> ChunkError | None:
    """A waiting chunk shows why its last attempt failed; a finished one shows only its own error."""
    if chunk.get("status") not in ("pending", "sending"):
        return None
    last = chunk.get("last_error")
    return ChunkError(**last) if last else None


def get(table: Table, item: dict[str, Any], *, details: bool) -> OptimizedExecutionView:
    return view(item, store.chunk_summaries(table, item["execution_id"]) if details else None)


def cancel(table: Table, item: dict[str, Any], now: float) -> OptimizedExecutionView:
    execution_id = item["execution_id"]
    store.mark_cancel_requested(table, execution_id, now)
    failpoint("cancel.after_mark")
    cancelled = 0
    for chunk in store.pending_chunk_keys(table, execution_id):
        try:
            moved = not store.cancel_chunk(
                table, execution_id, chunk["sk"], chunk["group_id"], chunk["profile_count"], now
            )
        except TransactionCancelled:
            raise ApiError(
                503,
                "cancel_conflict",
                f"cancelling conflicted with a dispatcher of the group after {cancelled} chunk(s) were "
                "cancelled; send the DELETE again to cancel the rest",
            ) from None
        if not moved:
            cancelled += 1
            failpoint("cancel.after_chunk")
    status = derive_status(item)
    if cancelled == 0 and status not in ("queued", "dispatching"):
        if status == "scheduled":
            raise NotCancellable(
                "execution is scheduled: every chunk was handed to Optimized.app, to start at "
                f"{iso(float(item['schedule']['start_at']))}; nothing left to cancel here"
            )
        raise NotCancellable(f"execution is {status}; nothing left to cancel")
    current = executions.get(table, execution_id) or item
    return get(table, current, details=True)


def scheduled(item: dict[str, Any]) -> ScheduledItem | None:
    schedule = item.get("schedule") or {}
    if schedule.get("start_at") is None:
        return None
    return ScheduledItem(
        execution_id=item["execution_id"],
        destination=item["destination"],
        status=derive_status(item),
        run_at=iso(float(schedule["start_at"])),
        details={"group_id": item.get("group_id"), "campaign_uuid": schedule.get("campaign_uuid")},
    )
