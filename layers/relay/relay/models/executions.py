"""What the API shows of an execution: status, counts, chunks with their upstream ids."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from relay.models.optimized import ExecutionStatus
from relay.models.optimove import OptimoveStatus
from relay.models.results import ResultCounts


class ChunkCounts(BaseModel):
    total: int
    pending: int = Field(description="Waiting for a rate-limit slot (or being sent right now)")
    sent: int
    failed: int
    ambiguous: int = Field(description="Timed out after sending: may or may not exist upstream")
    dead_lettered: int = Field(description="Gave up after retries; re-drive with `relay-dlq redrive`")
    cancelled: int
    start_shifted: int = Field(description="Sent after their start_at, so started at send time")


class ProfileCounts(BaseModel):
    total: int
    sent: int
    failed: int
    ambiguous: int
    dead_lettered: int
    cancelled: int


class ChunkError(BaseModel):
    status: int | None = None
    message: str


class ChunkView(BaseModel):
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


class Transition(BaseModel):
    status: str
    at: str
    note: str | None = None


class OptimoveDetails(BaseModel):
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


class ExecutionView(BaseModel):
    execution_id: str
    destination: str
    status: ExecutionStatus | OptimoveStatus
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
    optimove: OptimoveDetails | None = None
    transitions: list[Transition] | None = Field(None, description="Each status change, timestamped")


class ExecutionPage(BaseModel):
    items: list[ExecutionView]
    next_token: str | None = Field(None, description="Pass as ?next_token= for the next page")
