"""An audience write as ``GET /v1/executions/{id}`` shows it: its calls with their indexing tokens
and states, when the audience was ready, its errors."""

from __future__ import annotations

from typing import Any

from relay.core.clock import iso
from relay.destinations.batch.audiences.models import TERMINAL, AudienceCall, AudienceDetails, AudienceStatus
from relay.executions.models import ChunkCounts, ExecutionView, ProfileCounts, Transition


def _iso(value: Any) -> str | None:
    return iso(float(value)) if value not in (None, "") else None


def audience_details(item: dict[str, Any]) -> AudienceDetails:
    states = item.get("call_states") or {}
    calls = []
    for call in item.get("calls") or []:
        state = states.get(str(call["n"])) or {}
        calls.append(
            AudienceCall(
                n=int(call["n"]),
                ids=int(call.get("ids", 0)),
                indexing_token=call.get("indexing_token"),
                indexing_state=state.get("state"),
                sent_at=_iso(call.get("sent_at")),
                indexed_at=_iso(state.get("indexed_at")),
            )
        )
    return AudienceDetails(
        name=item["audience"],
        operation=item["operation"],
        display_name=item.get("display_name"),
        sequence=int(item.get("seq", 0)),
        ids=int(item.get("ids_total", 0)),
        calls_total=int(item.get("calls_total", 1)),
        calls_made=int(item.get("calls_made", 0)),
        calls=calls,
        ready_at=_iso(item.get("ready_at")),
        attempts=int(item.get("attempts", 0)),
        rate_limited=int(item.get("rate_limited", 0)),
        error_code=item.get("error_code"),
        error_message=item.get("error_message"),
        upstream_http_status=item.get("upstream_http_status"),
        last_error=item.get("last_error"),
    )


def sent_times(item: dict[str, Any]) -> tuple[str | None, str | None]:
    """(first, last) call times."""
    times = [float(c["sent_at"]) for c in item.get("calls") or [] if c.get("sent_at") is not None]
    return (_iso(min(times)), _iso(max(times))) if times else (None, None)


class AudienceExecutionView(ExecutionView):
    """An audience write: one of create, update, replace, remove, with its calls and indexing."""

    status: AudienceStatus
    audience: AudienceDetails


def audience_view(item: dict[str, Any]) -> AudienceExecutionView:
    first, last = sent_times(item)
    calls_total = int(item.get("calls_total", 1))
    calls_made = int(item.get("calls_made", 0))
    status = item["status"]
    failed = 1 if status == "failed" else 0
    ambiguous = 1 if status == "ambiguous" else 0
    return AudienceExecutionView(
        execution_id=item["execution_id"],
        destination=item["destination"],
        status=status,
        # The ids are the profiles of an audience write; its calls are its chunks.
        profiles=ProfileCounts(
            total=int(item.get("ids_total", 0)),
            sent=min(int(item.get("ids_total", 0)), calls_made * int(item.get("per_call") or 1)),
            failed=0,
            ambiguous=0,
            dead_lettered=0,
            cancelled=0,
        ),
        chunks=ChunkCounts(
            total=calls_total,
            pending=0 if status in TERMINAL else calls_total - calls_made,
            sent=calls_made,
            failed=failed,
            ambiguous=ambiguous,
            dead_lettered=0,
            cancelled=0,
            start_shifted=0,
        ),
        created_at=iso(item["created_at"]),
        updated_at=iso(item.get("updated_at", item["created_at"])),
        first_sent_at=first,
        last_sent_at=last,
        audience=audience_details(item),
        transitions=[
            Transition(status=t["status"], at=iso(float(t["at"])), note=t.get("note"))
            for t in item.get("transitions", [])
        ],
    )
