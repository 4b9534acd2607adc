"""Optimized.app batches API client: one call, one outcome, never an exception for HTTP trouble.

The outcome says whether the request can have reached the upstream: a connection that failed
before the request was written is safe to retry; a timeout after it was written is ambiguous.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from relay.models.optimized import BatchCreated, BatchRequest


@dataclass(frozen=True)
class Created:
    batch: BatchCreated


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


Outcome = Created | RateLimited | Rejected | Unavailable | Ambiguous


class OptimizedClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "campaign-relay/0.1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def create_batch(self, group_id: str, request: BatchRequest, *, now: float | None = None) -> Outcome:
        try:
            response = self._http.post(f"/v1/groups/{group_id}/batches", json=request.body())
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Unavailable(None, f"not sent: {type(exc).__name__}: {exc}")
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # The body was not fully written, so the upstream cannot have acted on it.
            return Unavailable(None, f"not sent: {type(exc).__name__}: {exc}")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return Ambiguous(f"sent, no answer: {type(exc).__name__}: {exc}")
        return interpret(response, now=time.time() if now is None else now)


def interpret(response: httpx.Response, *, now: float) -> Outcome:
    status = response.status_code
    if status in (200, 201):
        try:
            return Created(BatchCreated.model_validate_json(response.content))
        except ValidationError as exc:
            # Accepted upstream but unreadable: it was created, we just do not know its ids.
            return Ambiguous(f"{status} with an unreadable body: {exc.errors()[:1]}")
    if status == 429:
        return RateLimited(retry_at=retry_at(response.headers, now), headers=_ratelimit_headers(response))
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


def _ratelimit_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith(("x-ratelimit", "retry-after"))}
