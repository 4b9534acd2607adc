"""Campaign results (from Optimized.app webhooks): the normalised event, its stored view, counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from relay.core.models import Model, RequestModel
from relay.core.timeutil import within_range
from relay.executions.models import COUNTERS, ResultCounts, ResultMirror

__all__ = ["COUNTERS", "ResultCounts", "ResultMirror"]

ResultType = Literal[
    "sms.delivered",
    "sms.failed",
    "sms.reply",
    "email.delivered",
    "email.opened",
    "email.bounced",
    "call.completed",
    "call.no_answer",
    "call.failed",
    "profile.opted_out",
    "unknown",
]
RESULT_TYPES: tuple[str, ...] = ResultType.__args__  # type: ignore[attr-defined]

# Which execution counter each type adds to (one place, so the API and the store agree).
COUNTER_OF_TYPE: dict[str, str] = {
    "sms.delivered": "delivered",
    "email.delivered": "delivered",
    "sms.failed": "failed",
    "email.bounced": "failed",
    "call.failed": "failed",
    "email.opened": "opened",
    "call.completed": "answered",
    "call.no_answer": "no_answer",
    "sms.reply": "replied",
    "profile.opted_out": "opted_out",
    "unknown": "unknown",
}


class ResultEvent(Model):
    """One webhook event, normalised: the platform's own names live only in the adapter."""

    event_id: str = Field(description="The platform's event id, or 'sha256:<hash>' of its content")
    type: ResultType
    source_type: str | None = Field(None, description="The event name as the platform sent it")
    occurred_at: str | None = Field(None, description="ISO 8601 UTC when the platform says it happened")
    profile_uuid: str | None = None
    external_id: str | None = None
    batch_uuid: str | None = None
    schedule_uuid: str | None = None
    campaign_uuid: str | None = None
    phone: str | None = None
    email: str | None = None
    raw: Any = Field(None, description="The event exactly as received (parsed JSON)")


class ResultView(ResultEvent):
    """A stored result: the event plus what it was linked to."""

    received_at: str
    matched: bool
    execution_id: str | None = None
    chunk_seq: int | None = None
    profile_index: int | None = Field(None, description="Index of the profile in the caller's trigger")
    ref: str | None = Field(None, description="The caller's own ref of that profile")
    mirrors: list[ResultMirror] = Field(
        default_factory=list,
        description="Where the result is mirrored onto another platform's profile (Batch.com), or why not",
    )


MirrorFilter = Literal["skipped"]


class ResultPage(Model):
    items: list[ResultView]
    next_token: str | None = Field(None, description="Pass as ?next_token= for the next page")


class WebhookAccepted(Model):
    accepted: int = Field(description="New events, stored and queued")
    duplicates: int = Field(description="Events seen before: nothing changed")
    event_ids: list[str]


class ReplayRequest(RequestModel):
    """POST /v1/results/replay: forward again the results received in a window."""

    since: datetime = Field(description="ISO 8601; results received at or after this")
    until: datetime | None = Field(None, description="ISO 8601; results received before this (default: now)")
    type: ResultType | None = Field(None, description="Only results of this type")

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return within_range(value.astimezone(UTC))


class ReplayAccepted(Model):
    queued: int = Field(description="Results queued to be forwarded again (each once, with its webhook-id)")
    forwarding: Literal["enabled"] = "enabled"
    was_disabled: bool = Field(description="Forwarding had been disabled (and is enabled again now)")
    held: int = Field(0, description="Results stored but not forwarded while it was disabled")
    since: str
    until: str
    truncated: bool = Field(False, description="More results than one request queues: replay from next_since")
    next_since: str | None = None
