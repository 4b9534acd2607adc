"""The customer's results endpoint (RESULTS_WEBHOOK_URL): Standard Webhooks requests, typed outcomes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from relay.core.secrets import listed
from relay.results.signatures import standard_headers


@dataclass(frozen=True)
class Delivered:
    status: int


@dataclass(frozen=True)
class RetryLater:
    """Worth trying again: a 5xx, a 429, any other refusal, or no answer at all."""

    status: int | None
    message: str
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Gone:
    """410: the customer asked us to stop sending."""

    status: int = 410


Outcome = Delivered | RetryLater | Gone


class ResultsEndpoint:
    def __init__(
        self,
        url: str,
        secret: str | Callable[[], str | None],
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        # A value, or a function read at each request (a rotated secret is seen within its cache
        # age). Comma-separated: each one signs (the new and the old one while rotating).
        self.secret = secret
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self.http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def post(self, webhook_id: str, body: bytes, *, now: float | None = None) -> Outcome:
        timestamp = int(now if now is not None else time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "campaign-relay",
            **standard_headers(self.secrets(), webhook_id, timestamp, body),
        }
        try:
            answer = self.http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return RetryLater(None, f"{type(exc).__name__}: {exc}")
        if 200 <= answer.status_code < 300:
            return Delivered(answer.status_code)
        if answer.status_code == 410:
            return Gone()
        retry_after = None
        if answer.status_code in (429, 503):
            retry_after = parse_retry_after(answer.headers.get("retry-after"), time.time())
        return RetryLater(answer.status_code, f"HTTP {answer.status_code}", retry_after)

    def secrets(self) -> list[str]:
        raw = self.secret() if callable(self.secret) else self.secret
        secrets = listed(raw)
        if not secrets:
            raise RuntimeError("RESULTS_WEBHOOK_SECRET is empty: results are signed")
        return secrets

    def close(self) -> None:
        self.http.close()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds (``120``) or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None
