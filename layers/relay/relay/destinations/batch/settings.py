"""Batch.com's settings: the upstream and its keys, its limits, the validation rules Batch does not
document for its REST API (each an assumption kept in configuration, with the value seen in its
SDKs and third-party code as the default), retries, audiences and result mirroring."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from relay.core.settings import BaseUrl, RelaySettings, loader

# The Batch event each type of Optimized.app result becomes when results are mirrored
# (BATCH_EVENT_NAMES overrides any of them; null: no event for that type). `unknown` results (a
# webhook the relay could not read) have none by default.
DEFAULT_EVENT_NAMES: dict[str, str | None] = {
    "sms.delivered": "sms_delivered",
    "sms.failed": "sms_failed",
    "sms.reply": "sms_replied",
    "email.delivered": "email_delivered",
    "email.opened": "email_opened",
    "email.bounced": "email_bounced",
    "call.completed": "call_completed",
    "call.no_answer": "call_no_answer",
    "call.failed": "call_failed",
    "profile.opted_out": "opted_out",
    "unknown": None,
}


class BatchSettings(RelaySettings):
    batch_api_url: BaseUrl = "https://api.batch.com/2.0"
    batch_rest_key: SecretStr | None = None
    batch_project_key: SecretStr | None = None
    # In AWS the keys come from Secrets Manager: these name the secrets (template parameters).
    batch_rest_key_secret: str | None = None
    batch_project_key_secret: str | None = None
    batch_connect_timeout_s: float = Field(3.0, gt=0)
    batch_read_timeout_s: float = Field(15.0, gt=0)

    # --- Limits (documented) ---------------------------------------------------------------
    # Every endpoint but /profiles/update: requests per second per project key.
    batch_project_rps: float = Field(1.0, gt=0)
    # /profiles/update: updates (one per custom id or installation in a call) per second, and the
    # burst the upstream's bucket allows on top.
    batch_profile_updates_per_s: float = Field(300.0, gt=0)
    batch_profile_updates_burst: int = Field(1000, ge=1)
    batch_operations_per_call: int = Field(200, ge=1, le=200)
    # How late after taking its updates a /profiles/update may reach Batch (the updates limiter
    # keeps burst x this many updates spare for it; see relay.core.limiter.token_bucket).
    batch_updates_slack_s: float = Field(1.0, ge=0, le=10)

    # --- Dispatch ------------------------------------------------------------------------------
    # A part-filled call waits this long (from its oldest operation) for more operations.
    batch_dispatch_linger_s: float = Field(0.5, ge=0, le=10)
    # Waits up to this long are slept; longer ones are a delayed wake-up.
    batch_dispatch_max_inline_wait_s: float = Field(2.0, ge=0, le=5)
    # Hand over to a fresh wake-up when the Lambda has less than this left: room for one more
    # round (a 2 s limiter wait, the 3 + 15 s HTTP timeouts, the records), so none is cut short.
    batch_dispatch_reserve_ms: int = Field(25_000, ge=0)
    # Operations claimed this long ago and never recorded (their dispatcher died): `ambiguous`.
    batch_stale_sending_s: float = Field(900.0, gt=0)

    # --- Validation rules Batch does not document for the REST API (unverified) ----------------
    batch_event_name_pattern: str = r"^[a-z0-9_]{1,30}$"
    # Custom attribute names (and event attribute names): Batch's SDKs say [a-zA-Z0-9_]{1,30}.
    batch_attribute_name_pattern: str = r"^[a-zA-Z0-9_]{1,30}$"
    batch_max_text_length: int = Field(300, ge=1)
    batch_max_events_per_profile: int = Field(15, ge=1)
    # Events must be dated within this many seconds before now, and never in the future.
    batch_event_max_age_s: int = Field(86_400, ge=1)
    batch_max_custom_id_length: int = Field(512, ge=1)

    # --- Retries -------------------------------------------------------------------------------
    # A 429 carries no documented Retry-After: back off from this, doubling up to the max.
    batch_retry_after_default_s: float = Field(1.0, ge=0, le=900)
    batch_retry_base_s: float = Field(2.0, ge=0)
    batch_retry_max_s: float = Field(300.0, ge=0, le=900)
    batch_retry_for_s: float = Field(6 * 3600.0, gt=0)
    # A timeout after a /profiles/update was sent may have applied it: by default `ambiguous`.
    batch_resend_ambiguous: bool = False

    # --- Audiences -----------------------------------------------------------------------------
    batch_audience_ids_per_call: int = Field(10_000, ge=1, le=10_000)
    # Indexing is followed through /audiences/view: first delay, ceiling, give-up age.
    batch_indexing_poll_first_s: float = Field(2.0, ge=0, le=900)
    batch_indexing_poll_max_s: float = Field(60.0, ge=0, le=900)
    batch_indexing_give_up_s: float = Field(6 * 3600.0, gt=0)
    # A slot of the project limiter is waited for inline up to this long; a longer wait re-queues
    # the write (or poll) with an SQS delay instead of sleeping in the Lambda.
    batch_audience_max_inline_wait_s: float = Field(1.5, ge=0, le=5)
    # A write hands over to a fresh message when its Lambda has less than this left.
    batch_audience_reserve_ms: int = Field(5000, ge=0)
    # A call claimed this long ago and never recorded was interrupted (its worker died):
    # `ambiguous` (or sent again with BATCH_RESEND_AMBIGUOUS).
    batch_audience_stale_sending_s: float = Field(120.0, gt=0)
    # Unverified whether Batch applies a write that arrives while an earlier one still indexes:
    # by default the next write of an audience goes once the earlier one's calls are made (Batch
    # orders them); true waits until the earlier one is indexed (slower, never overlapping).
    batch_audience_wait_for_indexing: bool = False
    # GET /v1/batch/audiences waits this long at most for a slot, then answers 503.
    batch_audience_list_wait_s: float = Field(2.0, ge=0, le=10)

    # --- Mirroring Optimized.app results onto Batch profiles -----------------------------------
    batch_mirror_results: bool = False
    # `ref` (the input profile's ref) or `attribute:<name>` (one of its attributes).
    batch_custom_id_from: str = Field("ref", pattern=r"^(ref|attribute:.+)$")
    # JSON object: result type -> Batch event name (or null: no event), over DEFAULT_EVENT_NAMES.
    batch_event_names: dict[str, str | None] = Field(default_factory=dict)

    # --- Resources (set by the template / the local stack) -------------------------------------
    batch_queue_url: str = ""
    batch_dlq_url: str = ""

    @field_validator("batch_event_names")
    @classmethod
    def _known_types(cls, names: dict[str, str | None]) -> dict[str, str | None]:
        unknown = sorted(set(names) - set(DEFAULT_EVENT_NAMES))
        if unknown:
            raise ValueError(
                f"BATCH_EVENT_NAMES: no result type {unknown}; types: {sorted(DEFAULT_EVENT_NAMES)}"
            )
        return names

    @model_validator(mode="after")
    def _event_names_valid(self) -> BatchSettings:
        # Checked only when results are mirrored: a stricter pattern must not stop profile updates.
        if not self.batch_mirror_results:
            return self
        pattern = re.compile(self.batch_event_name_pattern)
        bad = {t: n for t, n in self.event_names().items() if n is not None and not pattern.fullmatch(n)}
        if bad:
            raise ValueError(f"BATCH_EVENT_NAMES: {bad} do not match BATCH_EVENT_NAME_PATTERN")
        return self

    def event_names(self) -> dict[str, str | None]:
        """The Batch event name of each result type (None: mirrored without an event)."""
        return DEFAULT_EVENT_NAMES | self.batch_event_names

    def custom_id_attribute(self) -> str | None:
        """The input profile's attribute that holds the Batch custom id (None: its ref does)."""
        source, _, name = self.batch_custom_id_from.partition(":")
        return name if source == "attribute" else None

    def batch_key_sources(self):  # -> (SecretSource, SecretSource)
        """(REST key, project key): plain settings locally, Secrets Manager in AWS."""
        return (
            self.secret_source(self.batch_rest_key, self.batch_rest_key_secret),
            self.secret_source(self.batch_project_key, self.batch_project_key_secret),
        )


get_settings = loader(BatchSettings)
