"""Optimove API-triggered campaigns client: run an event generator, read an execution's status.

One call, one typed outcome (see ``upstreams.outcomes``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from relay.core.outcomes import (
    Ambiguous,
    RateLimited,
    Rejected,
    Unavailable,
    failure,
    http_client,
    send,
    with_fresh_credentials,
)
from relay.core.secrets import SecretSource, source
from relay.destinations.optimove.models import ExecutionStatusReport, RunAccepted, RunRequest


@dataclass(frozen=True)
class Accepted:
    run: RunAccepted


@dataclass(frozen=True)
class Status:
    report: ExecutionStatusReport


RunOutcome = Accepted | RateLimited | Rejected | Unavailable | Ambiguous
StatusOutcome = Status | RateLimited | Rejected | Unavailable | Ambiguous


class OptimoveClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | SecretSource | None,
        brand_key: str | SecretSource | None,
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        retry_after_default_s: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # Read at each request (rotated keys are seen within the secrets' cache age).
        self.keys = {"x-api-key": source(api_key), "x-brand-key": source(brand_key)}
        self.retry_after_default_s = retry_after_default_s
        self.refreshes = 0
        self._http = http_client(
            base_url,
            {},
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    def close(self) -> None:
        self._http.close()

    def run(self, event_generator_id: str, request: RunRequest) -> RunOutcome:
        path, body = f"/event-generators/{event_generator_id}/run", request.model_dump(mode="json")
        response = with_fresh_credentials(
            lambda: send(lambda: self._http.post(path, json=body, headers=self._auth())), self._refresh
        )
        if not isinstance(response, httpx.Response):
            return response
        status = response.status_code
        if status in (200, 201, 202):
            try:
                return Accepted(RunAccepted.model_validate_json(response.content))
            except ValidationError as exc:
                return Ambiguous(f"{status} with an unreadable body: {exc.errors()[:1]}")
        return self._failure(response)

    def status(self, optimove_execution_id: str) -> StatusOutcome:
        path = f"/executions/{optimove_execution_id}/status"
        response = with_fresh_credentials(lambda: self._get(path), self._refresh)
        if not isinstance(response, httpx.Response):
            return response
        if response.status_code == 200:
            try:
                return Status(ExecutionStatusReport.model_validate_json(response.content))
            except ValidationError as exc:
                return Unavailable(200, f"unreadable status body: {exc.errors()[:1]}")
        return self._failure(response)

    def _get(self, path: str) -> httpx.Response | Unavailable:
        try:
            return self._http.get(path, headers=self._auth())
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            # A status read changes nothing upstream: every transport failure is just "try later".
            return Unavailable(None, f"{type(exc).__name__}: {exc}")

    def _auth(self) -> dict[str, str]:
        values = {name: key.get() for name, key in self.keys.items()}
        return {name: value for name, value in values.items() if value}

    def _refresh(self) -> bool:
        """After a 401/403: both keys read again past their cache; True when either changed."""
        before = self._auth()
        self.refreshes += 1
        for key in self.keys.values():
            key.refresh()
        return self._auth() != before

    def _failure(self, response: httpx.Response) -> RateLimited | Rejected | Unavailable:
        return failure(response, now=time.time(), default_retry_s=self.retry_after_default_s)


__all__ = [
    "Accepted",
    "Ambiguous",
    "OptimoveClient",
    "RateLimited",
    "Rejected",
    "RunOutcome",
    "Status",
    "StatusOutcome",
    "Unavailable",
]
