"""What every upstream call can end in, and the HTTP details shared by all clients.

One call, one typed outcome, never an exception for HTTP trouble. The outcome says whether the
request can have reached the upstream: a connection that failed before the request was written is
safe to retry; a timeout after it was written is ambiguous.
"""

from __future__ import annotations

import email.utils
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


def retry_at(headers: httpx.Headers, now: float, *, default_s: float = 60.0) -> float:
    """When a 429 says to come back: X-Ratelimit-Reset (epoch s), else Retry-After (s or date)."""
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            value = float(reset)
            # Some servers send seconds-until-reset here; an epoch is always far larger.
            return value if value > 1e9 else now + value
        except ValueError:
            pass
    after = headers.get("retry-after")
    if after:
        try:
            return now + float(after)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(after)
            if parsed is not None:
                return parsed.timestamp()
    return now + default_s


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
