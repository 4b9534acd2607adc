"""Optimized.app: the relay's trigger API models and the upstream batches API payloads."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from relay.core.models import EmailAddress, Model, PhoneNumber, RequestModel
from relay.core.timeutil import IanaZone, to_utc
from relay.core.validation_messages import UUID_PATTERN, pattern

# Group ids are UUIDs in Optimized.app's admin ("Organization Settings -> Integration").
GroupId = Annotated[str, pattern(UUID_PATTERN, "a UUID")]

# Accepted clock skew when checking that start_at is not in the past.
START_AT_SKEW_S = 5


class Person(Model):
    model_config = ConfigDict(extra="allow")

    first_name: str | None = Field(None, max_length=255)
    last_name: str | None = Field(None, max_length=255)
    phone_number: PhoneNumber | None = None
    email_address: EmailAddress | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Person:
        if not self.phone_number and not self.email_address:
            raise ValueError("a profile needs person.phone_number (E.164) or person.email_address")
        return self


class Attribute(Model):
    name: str = Field(min_length=1, max_length=255)
    value: str | int | float | bool | None


class Profile(Model):
    """A profile as in the batches API, plus the caller's own ``ref`` to map results back."""

    person: Person
    attributes: list[Attribute] = Field(default_factory=list)
    ref: str | None = Field(None, max_length=256, description="Caller's own reference, echoed in results")


class Schedule(RequestModel):
    campaign_uuid: UUID
    timezone: IanaZone | None = Field(None, description="IANA time zone for a start_at without offset")
    start_at: datetime | None = Field(
        None,
        description="ISO 8601. With an offset it is exact; without one it is local time in `timezone` "
        "(UTC when no timezone). Omitted: as soon as the chunk is sent.",
    )
    calls_per_minute: int | None = Field(None, ge=1, le=60)

    @field_validator("start_at")
    @classmethod
    def _to_utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return value
        utc = to_utc(value, info.data.get("timezone"))
        if utc.timestamp() < time.time() - START_AT_SKEW_S:
            raise ValueError("start_at is in the past")
        return utc


class OptimizedTrigger(RequestModel):
    """``POST /v1/optimized/triggers``: any number of profiles for one group."""

    group_id: GroupId = Field(description="Optimized.app group UUID")
    profiles: list[Profile] = Field(min_length=1)
    schedule: Schedule | None = None


class TriggerAccepted(Model):
    execution_id: str
    status: str
    profiles: int
    chunks: int
    estimated_dispatch_done_at: str | None = None
    warnings: list[str] = Field(default_factory=list)


# --- Upstream: POST /v1/groups/{GROUP_ID}/batches ------------------------------------------------


class UpstreamCampaign(Model):
    uuid: str


class UpstreamSchedule(Model):
    start_at: str = Field(description="UTC, 'YYYY-MM-DD HH:MM:SS'")
    campaign: UpstreamCampaign
    calls_per_minute: int | None = None


class BatchRequest(Model):
    profiles: list[dict] = Field(max_length=50)
    schedule: UpstreamSchedule | None = None

    def body(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)


class UpstreamProfileRef(Model):
    model_config = ConfigDict(extra="ignore")
    uuid: str | None = None
    external_id: str | None = None


class UpstreamScheduleRef(Model):
    model_config = ConfigDict(extra="ignore")
    uuid: str | None = None
    status: str | None = None
    start_at: str | None = None


class BatchCreated(Model):
    """The parts of the 201 answer the relay keeps."""

    model_config = ConfigDict(extra="ignore")
    uuid: str
    profiles: list[UpstreamProfileRef] = Field(default_factory=list)
    schedule: UpstreamScheduleRef | None = None


def upstream_start_at(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def ceil_to_second(ts: float) -> float:
    """Upstream start times have whole seconds; round up so a shifted start is never in the past."""
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.microsecond:
        dt = dt.replace(microsecond=0) + timedelta(seconds=1)
    return dt.timestamp()


ExecutionStatus = Literal[
    "queued",  # nothing sent yet
    "dispatching",  # some chunks sent, others waiting for a slot
    "scheduled",  # every chunk not cancelled was handed upstream; the campaign starts at scheduled_for
    "completed",  # every chunk sent (and its start_at, if any, has passed)
    "partially_cancelled",  # the chunks not cancelled were sent; the rest were cancelled
    "partially_failed",  # some chunks failed, are ambiguous or dead-lettered; the rest were sent
    "failed",  # every chunk not cancelled failed
    "cancelled",  # cancelled before anything was sent
]
