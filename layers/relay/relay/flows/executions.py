"""Reading executions (status derived from counters kept by conditional writes) and cancelling."""

from __future__ import annotations

import base64
import json
from typing import Any

from relay.clock import iso
from relay.models.executions import (
    ChunkCounts,
    ChunkError,
    ChunkView,
    ExecutionPage,
    ExecutionView,
    ProfileCounts,
)
from relay.models.results import COUNTERS, ResultCounts
from relay.store import executions
from relay.store.table import Table


class NotFound(Exception):
    pass


class NotCancellable(Exception):
    pass


def derive_status(item: dict[str, Any]) -> str:
    if item.get("destination") == "optimove":
        return str(item["status"])  # one upstream call: its status is stored, not derived
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
    return "completed"


def view(item: dict[str, Any], chunk_items: list[dict[str, Any]] | None = None) -> ExecutionView:
    if item.get("destination") == "optimove":
        from relay.flows.optimove_views import optimove_view

        return optimove_view(item)

    def count(name: str) -> int:
        return int(item.get(name, 0))

    total = count("chunks_total")
    finished = sum(
        count(f"chunks_{s}") for s in ("sent", "failed", "ambiguous", "dead_lettered", "cancelled")
    )
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
    return ExecutionView(
        execution_id=item["execution_id"],
        destination=item.get("destination", "optimized"),
        status=derive_status(item),  # type: ignore[arg-type]
        group_id=item.get("group_id"),
        schedule=schedule,
        profiles=ProfileCounts(
            total=count("profiles_total"),
            sent=count("profiles_sent"),
            failed=count("profiles_failed"),
            ambiguous=count("profiles_ambiguous"),
            dead_lettered=count("profiles_dead_lettered"),
            cancelled=count("profiles_cancelled"),
        ),
        chunks=ChunkCounts(
            total=total,
            pending=total - finished,
            sent=count("chunks_sent"),
            failed=count("chunks_failed"),
            ambiguous=count("chunks_ambiguous"),
            dead_lettered=count("chunks_dead_lettered"),
            cancelled=count("chunks_cancelled"),
            start_shifted=count("chunks_start_shifted"),
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


def get_execution(table: Table, execution_id: str, *, with_chunks: bool = True) -> ExecutionView:
    item = executions.get(table, execution_id)
    if not item:
        raise NotFound(execution_id)
    with_chunks = with_chunks and item.get("destination") != "optimove"
    return view(item, executions.chunk_summaries(table, execution_id) if with_chunks else None)


def list_executions(
    table: Table,
    *,
    status: str | None,
    limit: int,
    next_token: str | None,
    since_iso: str | None = None,
    until_iso: str | None = None,
) -> ExecutionPage:
    start = decode_token(next_token)
    found: list[ExecutionView] = []
    # Status is derived, so it is filtered here; keep reading pages until the page is full.
    while True:
        items, start = executions.list_page(
            table, limit=limit, start=start, since_iso=since_iso, until_iso=until_iso
        )
        for item in items:
            v = view(item)
            if status is None or v.status == status:
                found.append(v)
        if len(found) >= limit or not start:
            break
    return ExecutionPage(items=found[:limit], next_token=encode_token(start) if start else None)


def cancel(table: Table, execution_id: str, now: float) -> ExecutionView:
    item = executions.get(table, execution_id)
    if not item:
        raise NotFound(execution_id)
    if item.get("destination") == "optimove":
        from relay.flows.optimove_schedule import NotCancellableOptimove
        from relay.flows.optimove_schedule import cancel as cancel_optimove

        try:
            return view(cancel_optimove(table, item, now))
        except NotCancellableOptimove as exc:
            raise NotCancellable(str(exc)) from exc
    executions.mark_cancel_requested(table, execution_id, now)
    cancelled = 0
    for chunk in executions.pending_chunk_keys(table, execution_id):
        if executions.cancel_chunk(
            table, execution_id, chunk["sk"], chunk["group_id"], chunk["profile_count"], now
        ):
            cancelled += 1
    if cancelled == 0 and derive_status(item) not in ("queued", "dispatching"):
        raise NotCancellable(f"execution is {derive_status(item)}; nothing left to cancel")
    return get_execution(table, execution_id)


def encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_token(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as exc:
        raise ValueError("next_token is not valid") from exc
    if not isinstance(key, dict):
        raise ValueError("next_token is not valid")
    return key
