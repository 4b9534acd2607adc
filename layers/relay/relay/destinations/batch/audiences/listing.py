"""``GET /v1/batch/audiences``: one page of Batch's /audiences/list, through the project limiter.

Batch pages with ``from`` (an audience name) and ``limit`` (at most 100), answering ``has_more``
and ``next_from``; the relay hands ``next_from`` on as its usual opaque ``next_token``."""

from __future__ import annotations

import time
from typing import Any

from relay.core.limiter import Limiter
from relay.core.paging import decode_token, encode_token
from relay.destinations.batch.audiences.models import AudiencePage, BatchAudienceList

LISTING = "batch-audiences"


class ListUnavailable(Exception):
    """No slot in time, or Batch did not answer: ``status`` is what the route answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def token_of(next_from: str) -> str:
    return encode_token({"listing": {"S": LISTING}, "from": {"S": next_from}})


def from_of(next_token: str | None) -> str | None:
    """Batch's ``from`` out of a token of :func:`token_of`; ValueError when it is not one."""
    key = decode_token(next_token, partition={"listing": LISTING}, sort_keys=["from"])
    return None if key is None else str(key["from"]["S"])


def list_page(
    client: Any, limiter: Limiter, *, limit: int, next_token: str | None, max_wait_s: float
) -> AudiencePage:
    from relay.destinations.batch.client import Accepted, RateLimited, Rejected

    params: dict[str, Any] = {"limit": limit}
    start = from_of(next_token)
    if start:
        params["from"] = start
    slot = limiter.acquire_until_answered(max_wait_s)
    if slot is None:
        raise ListUnavailable(
            429, "upstream_busy", "Batch's 1 request/s for this project is taken; try again"
        )
    try:
        outcome = client.call("GET", "/audiences/list", params=params)
    finally:
        limiter.answered(slot, time.time())
    if isinstance(outcome, Accepted):
        found = BatchAudienceList.model_validate(outcome.body)
        more = found.has_more and bool(found.next_from)
        return AudiencePage(items=found.audiences, next_token=token_of(found.next_from) if more else None)
    if isinstance(outcome, RateLimited):
        raise ListUnavailable(429, "upstream_busy", "Batch answered 429; try again in a few seconds")
    if isinstance(outcome, Rejected):
        raise ListUnavailable(502, "upstream_rejected", outcome.message)
    raise ListUnavailable(503, "upstream_unavailable", str(getattr(outcome, "message", outcome)))
