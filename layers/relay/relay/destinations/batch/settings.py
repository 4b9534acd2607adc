"""Batch.com's settings: the upstream and its keys, its limits, the validation rules Batch does not
document for its REST API (each an assumption kept in configuration, with the value seen in its
SDKs and third-party code as the default), retries, audiences and result mirroring."""

from __future__ import annotations

from pydantic import Field, SecretStr

from relay.core.settings import BaseUrl, RelaySettings, loader


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
    # Hand over to a fresh wake-up when the Lambda has less than this left.
    batch_dispatch_reserve_ms: int = Field(5000, ge=0)
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

    # --- Mirroring Optimized.app results onto Batch profiles -----------------------------------
    batch_mirror_results: bool = False
    # `ref` (the input profile's ref) or `attribute:<name>` (one of its attributes).
    batch_custom_id_from: str = Field("ref", pattern=r"^(ref|attribute:.+)$")

    # --- Resources (set by the template / the local stack) -------------------------------------
    batch_queue_url: str = ""
    batch_dlq_url: str = ""

    def batch_key_sources(self):  # -> (SecretSource, SecretSource)
        """(REST key, project key): plain settings locally, Secrets Manager in AWS."""
        return (
            self.secret_source(self.batch_rest_key, self.batch_rest_key_secret),
            self.secret_source(self.batch_project_key, self.batch_project_key_secret),
        )


get_settings = loader(BatchSettings)
