"""An Optimove execution as ``GET /v1/executions/{id}`` shows it (the shared ExecutionView)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from relay.core.clock import iso
from relay.core.models import Model
from relay.destinations.optimove import NAME
from relay.destinations.optimove.models import OptimoveStatus
from relay.executions.models import ChunkCounts, ChunkError, ExecutionView, ProfileCounts, Transition


class OptimoveDetails(Model):
    """What an Optimove execution adds: the trigger, Optimove's id and outcome."""

    event_generator_id: str
    topic_key: str
    send_at: str | None = None
    timezone: str | None = None
    dedupe_key: str | None = None
    optimove_execution_id: str | None = None
    upstream_status: str | None = Field(None, description="Last status Optimove reported")
    audience_size: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    upstream_http_status: int | None = None
    attempts: int = 0
    last_error: ChunkError | None = None
    sent_at: str | None = None
    last_polled_at: str | None = None


class OptimoveExecutionView(ExecutionView):
    status: OptimoveStatus
    optimove: OptimoveDetails | None = None


# Not sent yet: the run waits for its send_at (scheduled), or for its slot at send_at (queued).
WAITING = ("scheduled", "queued")


def _waiting_for(item: dict[str, Any]) -> str | None:
    send_at = item.get("send_at")
    if item["status"] not in WAITING or send_at in (None, "") or float(send_at) <= time.time():
        return None
    return iso(float(send_at))


def _iso(value: Any) -> str | None:
    return iso(float(value)) if value not in (None, "") else None


def optimove_view(item: dict[str, Any]) -> OptimoveExecutionView:
    last_error = item.get("last_error")
    return OptimoveExecutionView(
        execution_id=item["execution_id"],
        destination=NAME,
        status=item["status"],
        scheduled_for=_waiting_for(item),
        # One upstream call fans out to a topic's audience: there are no profiles or chunks.
        profiles=ProfileCounts(total=0, sent=0, failed=0, ambiguous=0, dead_lettered=0, cancelled=0),
        chunks=ChunkCounts(
            total=0, pending=0, sent=0, failed=0, ambiguous=0, dead_lettered=0, cancelled=0, start_shifted=0
        ),
        created_at=iso(item["created_at"]),
        updated_at=iso(item.get("updated_at", item["created_at"])),
        first_sent_at=_iso(item.get("sent_at")),
        last_sent_at=_iso(item.get("sent_at")),
        optimove=OptimoveDetails(
            event_generator_id=item["event_generator_id"],
            topic_key=item["topic_key"],
            send_at=_iso(item.get("send_at")),
            timezone=item.get("timezone"),
            dedupe_key=item.get("dedupe_key"),
            optimove_execution_id=item.get("optimove_execution_id"),
            upstream_status=item.get("upstream_status"),
            audience_size=item.get("audience_size"),
            error_code=item.get("error_code"),
            error_message=item.get("error_message"),
            upstream_http_status=item.get("upstream_http_status"),
            attempts=int(item.get("attempts", 0)),
            last_error=ChunkError(**last_error) if last_error else None,
            sent_at=_iso(item.get("sent_at")),
            last_polled_at=_iso(item.get("last_polled_at")),
        ),
        transitions=[
            Transition(status=t["status"], at=iso(float(t["at"])), note=t.get("note"))
            for t in item.get("transitions", [])
        ],
    )
