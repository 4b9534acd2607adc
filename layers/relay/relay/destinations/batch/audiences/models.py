"""The audience routes' requests and answers, and Batch's audience payloads (a contract: tests
outside the repo send these shapes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from relay.core.models import Model

# Batch: `[A-Za-z0-9_-]`, at most 255 characters, case-sensitive.
AudienceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,255}$")]

Operation = Literal["create", "update", "replace", "remove"]

AudienceStatus = Literal[
    "queued",  # accepted; waiting for its turn in the audience's sequence, a slot, or a retry
    "sending",  # one of its calls is being made
    "indexing",  # every call made: following the indexing tokens until the audience is ready
    "applied",  # terminal: Batch says every token is APPLIED (or REPLACED by a later write)
    "removed",  # terminal: the audience was removed
    "unconfirmed",  # terminal: not indexed within BATCH_INDEXING_GIVE_UP_S (the calls were made)
    "failed",  # terminal: refused by Batch (error_code/error_message), or retries exhausted
    "ambiguous",  # terminal: a call timed out after it was sent; Batch may or may not have it
]
TERMINAL = frozenset({"applied", "removed", "unconfirmed", "failed", "ambiguous"})
# Batch spells "in progress" two ways; a token REPLACED by a later replace is as done as APPLIED.
INDEXING = frozenset({"IN_PROGRESS", "IN_PROCESS"})
INDEXED = frozenset({"APPLIED", "REPLACED"})
# The relay's own state of a token whose audience a later write removed (its view answers 404):
# nothing is left to wait for.
SUPERSEDED = "SUPERSEDED"
DONE_STATES = INDEXED | {SUPERSEDED}


def _custom_id(value: str) -> str:
    from relay.destinations.batch.settings import get_settings

    limit = get_settings().batch_max_custom_id_length
    if len(value) > limit:
        raise ValueError(f"a custom id is at most {limit} characters (BATCH_MAX_CUSTOM_ID_LENGTH)")
    return value


CustomId = Annotated[str, Field(min_length=1), AfterValidator(_custom_id)]
Attributes = dict[str, Any]


class AudienceCreate(Model):
    """``POST /v1/batch/audiences``: a custom-id audience."""

    model_config = ConfigDict(extra="forbid")

    name: AudienceName = Field(description="`[A-Za-z0-9_-]`, at most 255 characters, case-sensitive")
    display_name: str | None = Field(None, min_length=1, max_length=255)


class IdChange(Model):
    model_config = ConfigDict(extra="forbid")

    action: Literal["add", "remove"]
    id: CustomId = Field(description="The profile's custom id")
    attributes: Attributes | None = Field(None, description="Audience attributes of this id (add)")


class IdsUpdate(Model):
    """``POST /v1/batch/audiences/{name}/ids``: ids added or removed, in order (the last action
    per id wins); any number, sent in calls of at most BATCH_AUDIENCE_IDS_PER_CALL."""

    model_config = ConfigDict(extra="forbid")

    ids: list[IdChange] = Field(min_length=1)


class Member(Model):
    model_config = ConfigDict(extra="forbid")

    id: CustomId = Field(description="The profile's custom id")
    attributes: Attributes | None = None


class IdsReplace(Model):
    """``PUT /v1/batch/audiences/{name}/ids``: the audience's ids from now on; any number (the
    first call replaces, the rest add)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Member] = Field(min_length=1)


class AudienceWriteAccepted(Model):
    execution_id: str
    status: str
    audience: str
    operation: Operation
    sequence: int = Field(description="Its place among the writes to this audience (applied in this order)")
    ids: int = Field(0, description="Ids in the write")
    calls: int = Field(description="Calls to Batch it takes")


class AudienceSummary(Model):
    """One audience as Batch's /audiences/list shows it."""

    model_config = ConfigDict(extra="ignore")

    name: str
    display_name: str | None = None
    type: str | None = None
    nb_ids: int | None = None
    indexing_state: str | None = None
    created: str | None = None
    updated: str | None = None


class AudiencePage(Model):
    items: list[AudienceSummary]
    next_token: str | None = Field(None, description="Pass as ?next_token= for the next page")


class BatchAudienceList(Model):
    """Batch's answer to ``GET /audiences/list``."""

    model_config = ConfigDict(extra="ignore")

    audiences: list[AudienceSummary] = Field(default_factory=list)
    count: int | None = None
    has_more: bool = False
    next_from: str | None = None


# --- What GET /v1/executions/{id} shows of an audience write ------------------------------------


class AudienceCall(Model):
    n: int = Field(description="The call's place in the write (0 first)")
    ids: int
    indexing_token: str | None = None
    indexing_state: str | None = Field(None, description="Last state /audiences/view reported")
    sent_at: str | None = None
    indexed_at: str | None = None


class AudienceDetails(Model):
    name: str
    operation: Operation
    display_name: str | None = None
    sequence: int
    ids: int
    calls_total: int
    calls_made: int
    calls: list[AudienceCall] = Field(default_factory=list)
    ready_at: str | None = Field(None, description="When Batch reported every call indexed")
    attempts: int = Field(0, description="Retries after 5xx or unreachable")
    rate_limited: int = Field(0, description="429s from Batch (retried)")
    error_code: str | None = None
    error_message: str | None = None
    upstream_http_status: int | None = None
    last_error: str | None = None
