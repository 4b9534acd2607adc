"""Forwarding pieces without a network: back-off, Retry-After, the customer client, link items."""

from __future__ import annotations

import json

import httpx
import pytest
from relay.destinations.optimized.links import link_items
from relay.destinations.optimized.store import ChunkResult, PendingChunk
from relay.results.deliver import backoff, forward_body, webhook_id
from relay.results.endpoint import Delivered, Gone, ResultsEndpoint, RetryLater, parse_retry_after
from relay.results.signatures import verify_standard

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"


def test_backoff_grows_with_jitter_is_capped_and_honours_retry_after() -> None:
    for attempt in range(1, 8):
        delay = backoff(attempt, 2.0, 60.0, None)
        assert min(60.0, 2.0 * 2 ** (attempt - 1)) * 0.5 <= delay <= min(60.0, 2.0 * 2 ** (attempt - 1))
    assert backoff(1, 0.0, 60.0, 30.0) == 30.0
    assert backoff(1, 0.0, 60.0, 5000.0) == 900.0  # SQS cannot delay longer


def test_retry_after_seconds_or_http_date() -> None:
    assert parse_retry_after("7", 0) == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None


def _endpoint(handler) -> ResultsEndpoint:
    return ResultsEndpoint("https://customer.example/results", SECRET, transport=httpx.MockTransport(handler))


def test_the_customer_client_signs_and_maps_answers() -> None:
    seen: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    assert _endpoint(ok).post("msg_1", b'{"a":1}', now=1_700_000_000) == Delivered(204)
    headers = dict(seen[0].headers)
    assert verify_standard(headers, seen[0].content, [SECRET], tolerance_s=5, now=1_700_000_000) == "msg_1"

    assert _endpoint(lambda r: httpx.Response(410)).post("m", b"{}") == Gone()
    limited = _endpoint(lambda r: httpx.Response(429, headers={"Retry-After": "3"})).post("m", b"{}")
    assert limited == RetryLater(429, "HTTP 429", 3.0)
    assert _endpoint(lambda r: httpx.Response(500)).post("m", b"{}") == RetryLater(500, "HTTP 500", None)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    outcome = _endpoint(down).post("m", b"{}")
    assert isinstance(outcome, RetryLater)
    assert outcome.status is None


def test_webhook_id_is_stable_and_the_body_is_an_envelope() -> None:
    view = {"event_id": "e1", "type": "sms.delivered", "received_at": "2026-01-01T00:00:00.000Z"}
    assert webhook_id(view) == webhook_id(dict(view)) != webhook_id({**view, "event_id": "e2"})
    body = json.loads(forward_body(view))
    assert body == {"type": "result.sms.delivered", "timestamp": "2026-01-01T00:00:00.000Z", "data": view}


def _sent(execution_id: str, seq: int, batch_uuid: str, profiles: list[dict]) -> ChunkResult:
    chunk = PendingChunk(execution_id, seq, "g", "lane", len(profiles), 0.0, "x")
    fields = {"batch_uuid": batch_uuid, "schedule_uuid": "s", "upstream_profiles_json": json.dumps(profiles)}
    return ChunkResult(chunk, "b", "sent", fields)


def test_link_items_per_profile_external_id_and_batch() -> None:
    results = [
        _sent("e1", 0, "B", [{"index": 0, "ref": "r0", "uuid": "u0", "external_id": "x0"}]),
        _sent("e2", 0, "B", [{"index": 3, "ref": None, "uuid": "u1", "external_id": None}]),
        ChunkResult(PendingChunk("e3", 0, "g", "l", 1, 0.0, "x"), "b", "failed", {}),
    ]
    items = {i["pk"]: i for i in link_items(results, 123)}
    assert set(items) == {"LINK#profile#u0", "LINK#external#x0", "LINK#profile#u1", "LINK#batch#B"}
    assert items["LINK#profile#u0"] | {} == {
        "pk": "LINK#profile#u0",
        "sk": "LINK",
        "execution_id": "e1",
        "chunk_seq": 0,
        "profile_index": 0,
        "ref": "r0",
        "profile_uuid": "u0",
        "external_id": "x0",
        "batch_uuid": "B",
        "schedule_uuid": "s",
        "expires_at": 123,
    }
    assert items["LINK#batch#B"]["execution_ids"] == ["e1", "e2"]
