"""The results path's settings: inbound webhooks (verification, de-duplication) and forwarding to
the customer's endpoint (signing, retries)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from relay.core.secrets import listed
from relay.core.settings import RelaySettings, loader, secret_value

# The results path's dead-letter queue for `relay dlq` and `relay status`: label -> env var of its URL.
DEAD_LETTER_QUEUES = {"results": "RESULTS_DLQ_URL"}


class ResultsSettings(RelaySettings):
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
    # Failed forwards are retried after each of these delays in turn (the last one repeats), like
    # Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h - about a day and a half. Delays
    # beyond SQS's 15 minutes are chained (the message is re-sent until it is due). Never sooner
    # than the endpoint's Retry-After (read as at most RESULTS_RETRY_AFTER_MAX_S). An endpoint that
    # keeps failing for the whole schedule is disabled until POST /v1/results/replay.
    # Empty - or not set while RESULTS_RETRY_BASE_S or RESULTS_RETRY_MAX_S is - : the earlier
    # exponential back-off between those two (at most 15 minutes), and no disabling.
    results_retry_schedule_s: str = "5,300,1800,7200,18000,36000,36000"
    # Attempts in all (the first and the retries): 8 = 1 + the 7 delays above. Fewer cuts the
    # schedule short (the endpoint is then disabled after the shorter one); more repeats its last
    # delay.
    results_max_attempts: int = Field(8, ge=1)
    results_retry_base_s: float = Field(5.0, ge=0)
    results_retry_max_s: float = Field(900.0, ge=0, le=900)  # SQS DelaySeconds ceiling
    results_retry_after_max_s: float = Field(86_400.0, ge=0)
    results_connect_timeout_s: float = Field(3.0, gt=0)
    results_read_timeout_s: float = Field(10.0, gt=0)

    # --- Resources (set by the template / the local stack) -------------------------------
    results_queue_url: str = ""
    results_dlq_url: str = ""

    @field_validator("results_retry_schedule_s")
    @classmethod
    def _schedule(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip() and not (0 <= float(part) < 1e9):
                raise ValueError("RESULTS_RETRY_SCHEDULE_S: delays in seconds, each 0 or more")
        return value

    def retry_schedule(self) -> list[float] | None:
        """The delay before each retry (len: RESULTS_MAX_ATTEMPTS - 1); None: exponential back-off."""
        delays = [float(part) for part in self.results_retry_schedule_s.split(",") if part.strip()]
        explicit = self.model_fields_set
        legacy = {"results_retry_base_s", "results_retry_max_s"} & explicit
        if not delays or (legacy and "results_retry_schedule_s" not in explicit):
            # A configuration that tuned the exponential back-off and names no schedule keeps it.
            return None
        retries = self.results_max_attempts - 1
        return (delays + [delays[-1]] * retries)[:retries]

    def webhook_secrets(self) -> list[str]:
        """Every secret accepted on inbound webhooks (several while one is being rotated)."""
        return listed(
            secret_value(self.webhook_secret, self.webhook_secret_name, self.relay_secret_max_age_s)
        )

    def results_url(self) -> str | None:
        return (self.results_webhook_url or "").strip() or None

    def results_secret(self) -> str | None:
        """Comma-separated: the results are signed with each (the new and the previous one while
        a rotation is in progress)."""
        return secret_value(
            self.results_webhook_secret, self.results_webhook_secret_name, self.relay_secret_max_age_s
        )


get_settings = loader(ResultsSettings)
