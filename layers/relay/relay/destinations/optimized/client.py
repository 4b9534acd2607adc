"""Optimized.app batches API client: one call, one typed outcome (see ``upstreams.outcomes``)."""

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
    retry_at,
    send,
    upstream_message,
    with_fresh_credentials,
)
from relay.core.secrets import SecretSource, source
from relay.destinations.optimized.models import BatchCreated, BatchRequest


@dataclass(frozen=True)
class Created:
    batch: BatchCreated


Outcome = Created | RateLimited | Rejected | Unavailable | Ambiguous


class OptimizedClient:
    def __init__(
        self,
        base_url: str,
        token: str | SecretSource | None,
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 15.0,
        retry_after_default_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry_after_default_s = retry_after_default_s
        # Read at each request (a rotated token is seen within the secret's cache age).
        self.token = source(token)
        self.refreshes = 0
        self._http = http_client(
            base_url,
            {},
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _auth(self) -> dict[str, str]:
        token = self.token.get()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _refresh(self) -> bool:
        """After a 401/403: the token read again past its cache; True when it changed."""
        before = self.token.get()
        self.refreshes += 1
        return self.token.refresh() != before

    def create_batch(self, group_id: str, request: BatchRequest, *, now: float | None = None) -> Outcome:
        path, body = f"/v1/groups/{group_id}/batches", request.body()
        response = with_fresh_credentials(
            lambda: send(lambda: self._http.post(path, json=body, headers=self._auth())), self._refresh
        )
        if not isinstance(response, httpx.Response):
            return response
        return interpret(
            response, now=time.time() if now is None else now, default_retry_s=self.retry_after_default_s
        )


def interpret(response: httpx.Response, *, now: float, default_retry_s: float = 60.0) -> Outcome:
    status = response.status_code
    if status in (200, 201):
        try:
            return Created(BatchCreated.model_validate_json(response.content))
        except ValidationError as exc:
            # Accepted upstream but unreadable: it was created, we just do not know its ids.
            return Ambiguous(f"{status} with an unreadable body: {exc.errors()[:1]}")
    return failure(response, now=now, default_retry_s=default_retry_s)


__all__ = [
    "Ambiguous",
    "Created",
    "OptimizedClient",
    "Outcome",
    "RateLimited",
    "Rejected",
    "Unavailable",
    "interpret",
    "retry_at",
    "upstream_message",
]
