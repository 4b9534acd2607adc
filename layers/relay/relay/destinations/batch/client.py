"""Batch.com CEP API client: one call, one typed outcome (see ``relay.core.outcomes``).

:meth:`BatchClient.call` is the generic call every endpoint goes through (profiles here, audiences
in ``audiences/``); :meth:`BatchClient.update_profiles` is ``POST /profiles/update`` on it. Every
request carries ``Authorization: Bearer <REST key>`` and ``X-Batch-Project: <project key>``, both
read at each request from their SecretSource and read again once after a 401/403 (a rotation).
Neither key is ever logged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from relay.core.outcomes import (
    Ambiguous,
    RateLimited,
    Unavailable,
    http_client,
    retry_at,
    send,
    with_fresh_credentials,
)
from relay.core.secrets import SecretSource, source

SUCCESS = "SUCCESS"
SUCCESS_WITH_PARTIAL_ERRORS = "SUCCESS_WITH_PARTIAL_ERRORS"


@dataclass(frozen=True)
class Accepted:
    """A 2xx answer (Batch answers 200/202) and its JSON body (``{}`` when it has none)."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return str(self.body.get("code") or "")

    @property
    def errors(self) -> list[dict[str, Any]]:
        """``/profiles/update``'s partial errors: ``{category, bulk_index, reason, attribute?}``."""
        errors = self.body.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


@dataclass(frozen=True)
class Rejected:
    """Refused for good (400 malformed, 401 key not valid for the project, other 4xx), with
    Batch's ``error_code`` / ``error_message`` when its body has them."""

    status: int
    error_code: str
    error_message: str

    @property
    def message(self) -> str:
        return f"HTTP {self.status} {self.error_code}: {self.error_message}"


Outcome = Accepted | Rejected | RateLimited | Unavailable | Ambiguous


class BatchClient:
    def __init__(
        self,
        base_url: str,
        rest_key: str | SecretSource | None,
        project_key: str | SecretSource | None,
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.rest_key = source(rest_key)
        self.project_key = source(project_key)
        self.refreshes = 0
        self._http = http_client(
            base_url,
            {"Content-Type": "application/json"},
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        headers = {}
        if rest_key := self.rest_key.get():
            headers["Authorization"] = f"Bearer {rest_key}"
        if project_key := self.project_key.get():
            headers["X-Batch-Project"] = project_key
        return headers

    def _refresh(self) -> bool:
        """After a 401/403: both keys read again past their cache; True when either changed."""
        before = (self.rest_key.get(), self.project_key.get())
        self.refreshes += 1
        return (self.rest_key.refresh(), self.project_key.refresh()) != before

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> Outcome:
        """One request to ``path`` (relative to the API's base, e.g. ``/audiences/list``).

        A 429 comes back as RateLimited: ``retry_at`` is the Retry-After's time when Batch sends
        one (it documents none), else 0.0 - the caller backs off on its own schedule."""

        def request() -> httpx.Response:
            return self._http.request(method, path, json=json, params=params, headers=self._headers())

        response = with_fresh_credentials(lambda: send(request), self._refresh)
        if not isinstance(response, httpx.Response):
            return response
        return interpret(response, now=time.time() if now is None else now)

    def update_profiles(self, operations: list[dict[str, Any]], *, now: float | None = None) -> Outcome:
        """``POST /profiles/update`` with at most 200 operations (the caller packs them)."""
        return self.call("POST", "/profiles/update", json=operations, now=now)


def interpret(response: httpx.Response, *, now: float) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        body = _json(response)
        return Accepted(status, body if isinstance(body, dict) else {})
    if status == 429:
        has_header = "retry-after" in response.headers or "x-ratelimit-reset" in response.headers
        at = retry_at(response.headers, now, default_s=0.0) if has_header else 0.0
        return RateLimited(
            retry_at=at, headers={k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
        )
    code, message = error_of(response)
    if status >= 500:
        return Unavailable(status, f"HTTP {status} {code}: {message}")
    return Rejected(status, code, message)


def error_of(response: httpx.Response) -> tuple[str, str]:
    """Batch's ``{error_code, error_message}``, or what the body says when it is not that."""
    body = _json(response)
    if isinstance(body, dict) and (body.get("error_code") or body.get("error_message")):
        return str(body.get("error_code") or ""), str(body.get("error_message") or "")[:500]
    return f"HTTP_{response.status_code}", response.text[:300]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json() if response.content else {}
    except ValueError:
        return None


__all__ = [
    "SUCCESS",
    "SUCCESS_WITH_PARTIAL_ERRORS",
    "Accepted",
    "Ambiguous",
    "BatchClient",
    "Outcome",
    "RateLimited",
    "Rejected",
    "Unavailable",
    "interpret",
]
