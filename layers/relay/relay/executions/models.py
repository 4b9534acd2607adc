"""What the API shows of an execution: status, counts, chunks with their upstream ids."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from relay.core.models import Model

# Result counters every execution shows (the results path adds to them as results arrive;
# ``mirror_skipped``: results a destination that mirrors them could not, e.g. no profile id).
COUNTERS = (
    "delivered",
    "failed",
    "opened",
    "answered",
    "no_answer",
    "replied",
    "opted_out",
    "unknown",
    "mirror_skipped",
)


class ResultCounts(Model):
    delivered: int = 0
    failed: int = 0
    opened: int = 0
    answered: int = 0
    no_answer: int = 0
    replied: int = 0
    opted_out: int = 0
    unknown: int = 0
    mirror_skipped: int = Field(
        0, description="Results not mirrored onto another platform's profile (see the result's mirrors)"
    )


class ResultMirror(Model):
    """A result mirrored onto another platform (a destination that mirrors results), decided when
    the result was recorded."""

    destination: str = Field(description="The destination that mirrors the result")
    status: Literal["mirrored", "skipped"] = Field(
        description="mirrored: handed over as the execution execution_id; skipped: see reason"
    )
    profile: str | None = Field(None, description="The destination's profile id it was mirrored onto")
    execution_id: str | None = Field(
        None,
        description="The destination's execution carrying it (GET /v1/executions/{id}: delivered or why not)",
    )
    reason: str | None = Field(None, description="Why it was skipped")


class ChunkCounts(Model):
    total: int
    pending: int = Field(description="Waiting for a rate-limit slot (or being sent right now)")
    sent: int
    failed: int
    ambiguous: int = Field(description="Timed out after sending: may or may not exist upstream")
    dead_lettered: int = Field(description="Gave up after retries; re-drive with `relay dlq redrive`")
    cancelled: int
    start_shifted: int = Field(description="Sent after their start_at, so started at send time")


class ProfileCounts(Model):
    total: int
    sent: int
    failed: int
    ambiguous: int
    dead_lettered: int
    cancelled: int


class ChunkError(Model):
    status: int | None = None
    message: str


class ChunkView(Model):
    seq: int
    profiles: int
    status: str
    batch_uuid: str | None = None
    schedule_uuid: str | None = None
    start_shifted: bool = False
    sent_start_at: str | None = None
    sent_at: str | None = None
    attempts: int = 0
    error: ChunkError | None = None


class Transition(Model):
    status: str
    at: str
    note: str | None = None


class ExecutionView(Model):
    execution_id: str
    destination: str
    status: str = Field(description="The destination's status of the execution")
    scheduled_for: str | None = Field(
        None, description="When the work is to run upstream, while it waits for that time (ISO 8601)"
    )
    group_id: str | None = None
    schedule: dict[str, Any] | None = None
    profiles: ProfileCounts
    chunks: ChunkCounts
    created_at: str
    updated_at: str
    first_sent_at: str | None = None
    last_sent_at: str | None = None
    estimated_dispatch_done_at: str | None = None
    warnings: list[str] = Field(default_factory=list)
    results: ResultCounts = Field(default_factory=ResultCounts, description="Webhook results, by kind")
    chunk_details: list[ChunkView] | None = None
    transitions: list[Transition] | None = Field(None, description="Each status change, timestamped")


class ExecutionPage(Model):
    items: list[Any] = Field(description="Executions as GET /v1/executions/{id} shows them")
    next_token: str | None = Field(None, description="Pass as ?next_token= for the next page")


class ScheduledItem(Model):
    execution_id: str
    destination: str
    status: str
    run_at: str
    details: dict[str, Any] = Field(default_factory=dict)


class SchedulePage(Model):
    items: list[ScheduledItem]


# --- GET /v1/status: what the relay is doing right now --------------------------------------------


class WaitingWork(Model):
    what: str = Field(description="What waits, in words (e.g. `profiles pending`)")
    key: str | None = Field(None, description="What it waits under (a group id, ...)")
    count: int


class LimiterUse(Model):
    name: str = Field(description="The limited thing (e.g. `group <id>`)")
    used: int = Field(description="Requests made in the window that ends now")
    booked_ahead: int = Field(0, description="Slots already taken for requests due later (claimed ahead)")
    limit: int
    window_s: float
    next_slot_in_s: float = Field(description="Seconds until one more request may go (0: now)")


class DestinationStatus(Model):
    destination: str
    waiting: list[WaitingWork] = Field(default_factory=list)
    limiters: list[LimiterUse] = Field(default_factory=list)


class QueueDepth(Model):
    queue: str = Field(description="The queue's label (`dispatch`, `optimove`, `poll`, `results`)")
    dead_letter: bool
    visible: int
    in_flight: int
    delayed: int


class RelayStatus(Model):
    at: str
    destinations: list[DestinationStatus]
    queues: list[QueueDepth]
