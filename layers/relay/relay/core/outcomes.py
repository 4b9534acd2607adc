"""What every upstream call can end in, and the HTTP details shared by all clients.

One call, one typed outcome, never an exception for HTTP trouble. The outcome says whether the
request can have reached the upstream: a connection that failed before the request was written is
safe to retry; a timeout after it was written is ambiguous.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class RateLimited:
    retry_at: float
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """The upstream refused the request for good (401, 403, 404, 422, other 4xx)."""

    status: int
    message: str


@dataclass(frozen=True)
class Unavailable:
    """Worth retrying later: 5xx, or the request never left (connect error)."""

    status: int | None
    message: str


@dataclass(frozen=True)
class Ambiguous:
    """The request may have been processed: timeout or dropped connection after sending it."""

    message: str


def send(request: Callable[[], httpx.Response]) -> httpx.Response | Unavailable | Ambiguous:
    """Run one request, mapping transport trouble to whether the upstream can have seen it."""
    try:
        return request()
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return Unavailable(None, f"not sent: {type(exc).__name__}: {exc}")
    except (httpx.WriteError, httpx.WriteTimeout) as exc:
        # The body was not fully written, so the upstream cannot have acted on it.
        return Unavailable(None, f"not sent: {type(exc).__name__}: {exc}")
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        return Ambiguous(f"sent, no answer: {type(exc).__name__}: {exc}")


# The upstream does not take our credentials: read the secret again (it may have just been
# rotated) and try once more before the answer counts.
UNAUTHORIZED = (401, 403)


def with_fresh_credentials(
    request: Callable[[], httpx.Response | Unavailable | Ambiguous], refresh: Callable[[], bool]
) -> httpx.Response | Unavailable | Ambiguous:
    """``request`` once more after a 401/403 when ``refresh`` re-read the secrets and they changed
    (a request refused for its credentials did nothing upstream, so trying again is safe)."""
    response = request()
    if isinstance(response, httpx.Response) and response.status_code in UNAUTHORIZED and refresh():
        return request()
    return response


def failure(
    response: httpx.Response, *, now: float, default_retry_s: float = 60.0
) -> RateLimited | Rejected | Unavailable:
    """A non-2xx answer as an outcome: 429 with its reset time, 5xx retryable, 4xx final."""
    status = response.status_code
    if status == 429:
        return RateLimited(
            retry_at=retry_at(response.headers, now, default_s=default_retry_s),
            headers=ratelimit_headers(response),
        )
    message = upstream_message(response)
    if status >= 500:
        return Unavailable(status, message)
    return Rejected(status, message)


# A 429 asking for more than this is read as this: a header is advice, and a wild one (a date
# in the year 9999) must not park work for good.
MAX_RETRY_AFTER_S = 3600.0


def retry_at(headers: httpx.Headers, now: float, *, default_s: float = 60.0) -> float:
    """When a 429 says to come back: X-Ratelimit-Reset (epoch s), else Retry-After (s or date);
    a header that does not parse, or is not finite, counts as absent. Never before ``now``, never
    more than an hour ahead."""
    at = _reset_header(headers.get("x-ratelimit-reset"), now)
    if at is None:
        at = _retry_after_header(headers.get("retry-after"), now)
    if at is None:
        at = now + default_s
    return min(max(at, now), now + MAX_RETRY_AFTER_S)


def _reset_header(value: str | None, now: float) -> float | None:
    number = _finite(value)
    if number is None:
        return None
    # Some servers send seconds-until-reset here; an epoch is always far larger.
    return number if number > 1e9 else now + number


def _retry_after_header(value: str | None, now: float) -> float | None:
    number = _finite(value)
    if number is not None:
        return now + number
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _finite(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def upstream_message(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("error") or "")
        errors = body.get("errors")
        if isinstance(errors, dict) and errors:
            first = "; ".join(f"{k}: {v[0] if isinstance(v, list) and v else v}" for k, v in errors.items())
            message = f"{message} ({first})" if message else first
        if message:
            return f"HTTP {response.status_code}: {message[:500]}"
    return f"HTTP {response.status_code}: {str(body)[:300]}"


def ratelimit_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith(("x-ratelimit", "retry-after"))}


def http_client(
    base_url: str,
    headers: dict[str, str],
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
    transport: httpx.BaseTransport | None = None,
    **options: Any,
) -> httpx.Client:
    """The HTTP client of an upstream: JSON, our user agent, its own timeouts."""
    return httpx.Client(
        base_url=base_url,
        headers={"Accept": "application/json", "User-Agent": "campaign-relay/0.1", **headers},
        timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
        transport=transport,
        **options,
    )
