"""Every setting of the relay in one pydantic-settings model, parsed once per process.

The env names are a stable contract (DESIGN.md, "Configuration contract"). In AWS, secrets come
from Secrets Manager: the ``*_SECRET`` variables name the secret and :func:`resolve_secret` reads
it through Powertools Parameters (cached); locally the plain variables hold the values.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # --- Optimized.app -------------------------------------------------------------------
    optimized_api_url: str = "https://api.optimized.app"
    optimized_api_token: SecretStr | None = None
    optimized_api_token_secret: str | None = None
    optimized_group_limit: int = Field(10, ge=1)
    optimized_group_window_s: float = Field(60.0, gt=0)
    optimized_token_limit: int = Field(250, ge=1)
    optimized_token_window_s: float = Field(60.0, gt=0)
    # Added to every window. Sends are stamped when the upstream's answer arrives (an upper bound
    # of when it counted them); the margin covers the upstream keeping its timers in whole seconds
    # (Laravel's limiter does) and clock drift. Compressed tests and benchmarks use 0.05.
    optimized_window_margin_s: float = Field(1.0, ge=0)
    optimized_batch_size: int = Field(50, ge=1, le=50)
    optimized_connect_timeout_s: float = Field(3.0, gt=0)
    optimized_read_timeout_s: float = Field(15.0, gt=0)
    optimized_max_attempts: int = Field(5, ge=1)
    optimized_retry_base_s: float = Field(2.0, ge=0)
    optimized_retry_max_s: float = Field(300.0, ge=0)
    # A timeout after the request was sent may have created the batch upstream: re-sending risks
    # calling people twice, so by default such chunks are parked as `ambiguous`.
    optimized_resend_ambiguous: bool = False

    # --- Optimove (contract names; used by the Optimove path) ---------------------------
    optimove_api_url: str = "https://opti-x.optimove.net/smart-campaigns/v1"
    optimove_api_key: SecretStr | None = None
    optimove_brand_key: SecretStr | None = None
    optimove_brand_rps: float = Field(500, gt=0)
    # In AWS the keys come from Secrets Manager: these name the secrets (template parameters).
    optimove_api_key_secret: str | None = None
    optimove_brand_key_secret: str | None = None
    optimove_connect_timeout_s: float = Field(3.0, gt=0)
    optimove_read_timeout_s: float = Field(10.0, gt=0)
    # Limiter buckets are never narrower than this (each bucket is one DynamoDB item).
    optimove_limit_bucket_min_s: float = Field(0.05, gt=0, le=1)
    # A sender waits at most this long in-process for a slot; longer waits are re-queued.
    optimove_max_inline_wait_s: float = Field(1.0, ge=0, le=10)
    # 500 / unreachable: retried with exponential backoff and full jitter, then dead-lettered.
    optimove_max_attempts: int = Field(6, ge=1)
    optimove_retry_base_s: float = Field(2.0, ge=0)
    optimove_retry_max_s: float = Field(300.0, ge=0, le=900)
    # Retry-After missing on a 429: wait this long.
    optimove_retry_after_default_s: float = Field(1.0, ge=0, le=900)
    # A timeout after the run request was written may have started the campaign: re-sending
    # risks running it twice (Optimove has no de-duplication), so by default it becomes `unknown`.
    optimove_resend_ambiguous: bool = False
    # Status polling: first delay, growth factor, ceiling (SQS delays, whole seconds), give-up age.
    optimove_poll_first_delay_s: float = Field(5.0, ge=0, le=900)
    optimove_poll_backoff: float = Field(2.0, ge=1)
    optimove_poll_max_delay_s: float = Field(300.0, ge=0, le=900)
    optimove_poll_max_s: float = Field(3600.0, gt=0)
    # Context schemas: a JSON or YAML file {generator_id: JSON Schema}; API-managed ones override.
    optimove_schemas: str | None = None
    optimove_require_schema: bool = False
    optimove_schema_cache_s: float = Field(30.0, ge=0)
    # De-duplication: without dedupe_key, a hash of generator + topic + context is the key when
    # this window is > 0; an explicit dedupe_key uses it, or OPTIMOVE_DEDUPE_KEY_WINDOW_S when 0.
    optimove_dedupe_window_s: int = Field(0, ge=0)
    optimove_dedupe_key_window_s: int = Field(86_400, ge=1)
    # Scheduled triggers due within this are released with an SQS delay (so they fire on time).
    optimove_scheduler_lookahead_s: int = Field(70, ge=0, le=900)
    # Forward terminal statuses to RESULTS_WEBHOOK_URL (through the results queue, when present).
    optimove_forward_results: bool = True

    # --- Batch.com (contract names) ------------------------------------------------------
    batch_api_url: str = "https://api.batch.com/2.0"
    batch_rest_key: SecretStr | None = None
    batch_project_key: SecretStr | None = None
    batch_project_rps: float = Field(1, gt=0)

    # --- Webhooks and results ------------------------------------------------------------
    # Inbound (Optimized.app -> relay). Secrets: comma-separated for rotation; `whsec_<base64>`
    # is base64-decoded, anything else is used as its UTF-8 bytes. In AWS: WEBHOOK_SECRET_NAME.
    webhook_secret: SecretStr | None = None
    webhook_secret_name: str | None = None
    webhook_tolerance_s: int = Field(300, ge=1)
    webhook_max_bytes: int = Field(1_048_576, ge=1024)
    # The platform's signature scheme is unverified: "standard" (Standard Webhooks) or "hmac".
    webhook_scheme: Literal["standard", "hmac"] = "standard"
    webhook_hmac_header: str = "x-signature"
    webhook_hmac_encoding: Literal["hex", "base64"] = "hex"
    webhook_hmac_algorithm: Literal["sha256", "sha1"] = "sha256"
    # Stripped from the plain-HMAC header value when present (e.g. "sha256=").
    webhook_hmac_prefix: str = ""
    webhook_dedupe_ttl_s: int = Field(7 * 86_400, ge=60)
    # Outbound (relay -> the customer), Standard Webhooks. In AWS: RESULTS_WEBHOOK_SECRET_NAME.
    results_webhook_url: str | None = None
    results_webhook_secret: SecretStr | None = None
    results_webhook_secret_name: str | None = None
    results_max_attempts: int = Field(8, ge=1)
    results_retry_base_s: float = Field(5.0, ge=0)
    results_retry_max_s: float = Field(900.0, ge=0, le=900)  # SQS DelaySeconds ceiling
    results_connect_timeout_s: float = Field(3.0, gt=0)
    results_read_timeout_s: float = Field(10.0, gt=0)

    # --- The relay's own API -------------------------------------------------------------
    relay_api_keys: SecretStr | None = None
    relay_api_keys_secret: str | None = None
    relay_max_body_bytes: int = Field(5_000_000, ge=1024)
    relay_local_port: int = 3000

    # --- Dispatch tuning -----------------------------------------------------------------
    # Spend a slot on a part-filled batch only once its oldest profile has waited this long.
    dispatch_linger_s: float = Field(1.0, ge=0)
    # SQS delays are whole seconds and a delayed message is seen up to a second late, so a longer
    # wait is re-queued to arrive `dispatch_wake_lead_s` early and the rest (at most this long) is
    # slept in the dispatcher, which then sends the moment the slot opens.
    dispatch_max_inline_wait_s: float = Field(2.0, ge=0, le=5)
    dispatch_wake_lead_s: float = Field(1.0, ge=0, le=4)
    # When only some slots are free and the rest free up within this, wait and send them together.
    dispatch_gather_s: float = Field(0.25, ge=0, le=5)
    # Stop taking new slots when less than this remains of the Lambda's time.
    dispatch_reserve_ms: int = Field(5000, ge=0)
    # A chunk claimed this long ago and still not finished lost its dispatcher (crash, timeout):
    # it is marked ambiguous, as it may or may not have reached the upstream.
    dispatch_stale_sending_s: float = Field(900.0, gt=0)

    # --- Resources (set by the template / the local stack) -------------------------------
    relay_table_name: str = "RelayTable"
    # Upstream profile/batch ids -> execution, chunk, profile: written at 2 items per profile sent,
    # read when a result arrives. A table of its own keeps that volume away from the main table.
    relay_links_table_name: str = "LinksTable"
    # Two link items per profile sent let a result that names only a profile uuid/external_id find
    # its execution. Off: only one per batch (results must then carry the batch uuid), which saves
    # those writes where webhooks are not used or always name the batch.
    results_link_profiles: bool = True
    dispatch_queue_url: str = ""
    dispatch_dlq_url: str = ""
    optimove_queue_url: str = ""
    optimove_dlq_url: str = ""
    poll_queue_url: str = ""
    poll_dlq_url: str = ""
    results_queue_url: str = ""
    results_dlq_url: str = ""
    execution_ttl_days: int = Field(90, ge=1)
    idempotency_ttl_s: int = Field(86_400, ge=60)

    @field_validator("optimized_api_url", "optimove_api_url", "batch_api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def api_keys(self) -> frozenset[str]:
        raw = self.relay_api_keys.get_secret_value() if self.relay_api_keys else None
        if raw is None and self.relay_api_keys_secret:
            raw = resolve_secret(self.relay_api_keys_secret)
        return frozenset(k.strip() for k in (raw or "").split(",") if k.strip())

    def optimove_keys(self) -> tuple[str | None, str | None]:
        """(x-api-key, x-brand-key): plain settings locally, Secrets Manager in AWS."""
        api = self.optimove_api_key.get_secret_value() if self.optimove_api_key else None
        brand = self.optimove_brand_key.get_secret_value() if self.optimove_brand_key else None
        if api is None and self.optimove_api_key_secret:
            api = resolve_secret(self.optimove_api_key_secret)
        if brand is None and self.optimove_brand_key_secret:
            brand = resolve_secret(self.optimove_brand_key_secret)
        return api, brand

    def optimized_token(self) -> str | None:
        if self.optimized_api_token:
            return self.optimized_api_token.get_secret_value()
        if self.optimized_api_token_secret:
            return resolve_secret(self.optimized_api_token_secret)
        return None

    def webhook_secrets(self) -> list[str]:
        """Every secret accepted on inbound webhooks (several while one is being rotated)."""
        raw = self.webhook_secret.get_secret_value() if self.webhook_secret else None
        if raw is None and self.webhook_secret_name:
            raw = resolve_secret(self.webhook_secret_name)
        return [s.strip() for s in (raw or "").split(",") if s.strip()]

    def results_url(self) -> str | None:
        return (self.results_webhook_url or "").strip() or None

    def results_secret(self) -> str | None:
        if self.results_webhook_secret and self.results_webhook_secret.get_secret_value().strip():
            return self.results_webhook_secret.get_secret_value().strip()
        if self.results_webhook_secret_name:
            return resolve_secret(self.results_webhook_secret_name)
        return None


def resolve_secret(name: str) -> str:
    # Imported here: only deployed functions read Secrets Manager, and the import is not free.
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(name, max_age=300))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the parsed settings (tests and the local stack change the environment)."""
    get_settings.cache_clear()
