"""Optimove API-triggered campaigns: the relay's trigger API and the upstream payloads."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from relay.core.models import Model, RequestModel
from relay.core.timeutil import IanaZone, to_utc
from relay.core.validation_messages import pattern

# The docs say UUID, but their own second example ("11111111-xyz-xyz-xyz-111111111111") is not
# one: accept any path-safe id rather than encode an unverified format.
GeneratorId = Annotated[
    str, pattern(r"^[A-Za-z0-9._-]{1,128}$", "1 to 128 letters, digits, dots, dashes or underscores")
]

# Accepted clock skew when checking that send_at is not in the past.
SEND_AT_SKEW_S = 5

OptimoveStatus = Literal[
    "scheduled",  # waiting for send_at
    "queued",  # waiting for a rate-limit slot (or a retry)
    "sending",  # the run request is being made
    "accepted",  # Optimove answered 202: queued on its side
    "processing",  # Optimove is resolving the audience
    "published",  # terminal: events published (audience_size known)
    "failed",  # terminal: refused by Optimove (4xx) or its execution failed
    "unknown",  # terminal: no terminal status within OPTIMOVE_POLL_MAX_S, or an ambiguous send
    "dead_lettered",  # terminal: 5xx/unreachable after every retry; parked in the DLQ
    "cancelled",  # terminal: cancelled before it was sent
]
TERMINAL = frozenset({"published", "failed", "unknown", "dead_lettered", "cancelled"})
CANCELLABLE = frozenset({"scheduled", "queued"})


class OptimoveTrigger(RequestModel):
    """``POST /v1/optimove/triggers``: run an event generator for every subscriber of a topic."""

    event_generator_id: GeneratorId = Field(description="Event generator id from Optimove")
    topic_key: str = Field(min_length=1, max_length=256, description="Preference Centre topic key")
    context: dict[str, Any] = Field(description="Template fields; checked against the generator's schema")
    timezone: IanaZone | None = Field(None, description="IANA time zone for a send_at without offset")
    send_at: datetime | None = Field(
        None,
        description="ISO 8601. With an offset it is exact; without one it is local time in `timezone` "
        "(UTC when no timezone). Omitted or past-due: sent now.",
    )
    dedupe_key: str | None = Field(
        None, min_length=1, max_length=256, description="Same key within the window: the first execution"
    )

    @field_validator("send_at")
    @classmethod
    def _send_at_utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return value
        try:
            utc = to_utc(value, info.data.get("timezone"))
        except ValueError as exc:
            raise ValueError(str(exc).replace("start_at", "send_at")) from exc
        if utc.timestamp() < time.time() - SEND_AT_SKEW_S:
            raise ValueError("send_at is in the past")
        return utc


class OptimoveTriggerAccepted(Model):
    execution_id: str
    status: str
    duplicate: bool = Field(False, description="An earlier execution with the same dedupe key")
    send_at: str | None = None


class GeneratorSchema(RequestModel):
    """``PUT /v1/optimove/generators/{id}/schema``: a JSON Schema for the trigger's context."""

    json_schema: dict[str, Any] = Field(
        alias="schema",
        description="JSON Schema (2020-12) of `context`; additionalProperties is false unless it says so",
    )


class GeneratorSchemaView(Model):
    event_generator_id: str
    json_schema: dict[str, Any] = Field(serialization_alias="schema")
    source: Literal["api", "file"]
    updated_at: str | None = None


# --- Upstream -------------------------------------------------------------------------------------


class RunRequest(Model):
    topic_key: str
    context: dict[str, Any]


class RunAccepted(Model):
    model_config = ConfigDict(extra="ignore")
    execution_id: str
    status: str = "queued"


class ExecutionStatusReport(Model):
    model_config = ConfigDict(extra="ignore")
    execution_id: str | None = None
    status: str
    created_at: str | None = None
    updated_at: str | None = None
    audience_size: int | None = None
    error_code: str | None = None
    error_message: str | None = None
