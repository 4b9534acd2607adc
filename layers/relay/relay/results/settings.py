"""The results path's settings: inbound webhooks (verification, de-duplication) and forwarding to
the customer's endpoint (signing, retries)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from relay.core.secrets import listed
from relay.core.settings import RelaySettings, loader, secret_value


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
    results_max_attempts: int = Field(8, ge=1)
    results_retry_base_s: float = Field(5.0, ge=0)
    results_retry_max_s: float = Field(900.0, ge=0, le=900)  # SQS DelaySeconds ceiling
    results_connect_timeout_s: float = Field(3.0, gt=0)
    results_read_timeout_s: float = Field(10.0, gt=0)

    # --- Resources (set by the template / the local stack) -------------------------------
    results_queue_url: str = ""
    results_dlq_url: str = ""

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
