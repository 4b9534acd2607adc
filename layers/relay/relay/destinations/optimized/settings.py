"""Optimized.app's settings: the upstream, its limits, retries and the dispatcher's tuning."""

from __future__ import annotations

from pydantic import Field, SecretStr

from relay.core.settings import BaseUrl, RelaySettings, loader


class OptimizedSettings(RelaySettings):
    optimized_api_url: BaseUrl = "https://api.optimized.app"
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
    # A chunk whose sends keep failing (5xx, unreachable) is retried, backing off up to
    # `optimized_retry_max_s` between attempts, for `optimized_retry_for_s` after its first
    # failure, then dead-lettered: an outage of hours is ridden out. A count bound applies only
    # if `optimized_max_attempts` is set (0: none).
    # A 429 without a readable X-Ratelimit-Reset or Retry-After waits this long (a whole window).
    optimized_retry_after_default_s: float = Field(60.0, ge=0, le=3600)
    optimized_retry_for_s: float = Field(6 * 3600.0, gt=0)
    optimized_max_attempts: int = Field(0, ge=0)
    optimized_retry_base_s: float = Field(2.0, ge=0)
    optimized_retry_max_s: float = Field(300.0, ge=0)
    # A timeout after the request was sent may have created the batch upstream: re-sending risks
    # calling people twice, so by default such chunks are parked as `ambiguous`.
    optimized_resend_ambiguous: bool = False

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

    # Two link items per profile sent let a result that names only a profile uuid/external_id find
    # its execution. Off: only one per batch (results must then carry the batch uuid), which saves
    # those writes where webhooks are not used or always name the batch.
    results_link_profiles: bool = True

    # --- Resources (set by the template / the local stack) -------------------------------
    dispatch_queue_url: str = ""
    dispatch_dlq_url: str = ""

    def optimized_token(self) -> str | None:
        return self.optimized_token_source().get()

    def optimized_token_source(self):  # -> SecretSource
        return self.secret_source(self.optimized_api_token, self.optimized_api_token_secret)


get_settings = loader(OptimizedSettings)
