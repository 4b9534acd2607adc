"""Optimove's settings: the upstream and its keys, the brand limit, retries, polling, schemas,
de-duplication and scheduling."""

from __future__ import annotations

from pydantic import Field, SecretStr

from relay.core.settings import BaseUrl, RelaySettings, loader

# DynamoDB reads and writes and SQS sends of one record, at worst (their own retries included).
RECORD_OVERHEAD_S = 3.0


class OptimoveSettings(RelaySettings):
    optimove_api_url: BaseUrl = "https://opti-x.optimove.net/smart-campaigns/v1"
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
    results_webhook_url: str | None = None

    # --- Resources (set by the template / the local stack) -------------------------------
    optimove_queue_url: str = ""
    optimove_dlq_url: str = ""
    poll_queue_url: str = ""
    poll_dlq_url: str = ""
    results_queue_url: str = ""

    def record_budget_ms(self) -> int:
        """The longest one queue record (a send or a status read) can take: two slot waits, the
        call's connect and read timeouts, and a few DynamoDB and SQS requests. A worker does not
        start a record with less time left; the template sizes each function's Timeout to its
        BatchSize times this (tests/unit check it)."""
        seconds = 2 * self.optimove_max_inline_wait_s + self.optimove_connect_timeout_s
        return int((seconds + self.optimove_read_timeout_s + RECORD_OVERHEAD_S) * 1000)

    def optimove_keys(self) -> tuple[str | None, str | None]:
        """(x-api-key, x-brand-key): plain settings locally, Secrets Manager in AWS."""
        api_key, brand_key = self.optimove_key_sources()
        return api_key.get(), brand_key.get()

    def optimove_key_sources(self):  # -> (SecretSource, SecretSource)
        return (
            self.secret_source(self.optimove_api_key, self.optimove_api_key_secret),
            self.secret_source(self.optimove_brand_key, self.optimove_brand_key_secret),
        )


get_settings = loader(OptimoveSettings)
