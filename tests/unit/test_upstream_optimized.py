"""relay.destinations.optimized.client: every HTTP answer or failure becomes one typed outcome."""

from __future__ import annotations

import json

import httpx
import pytest
from relay.destinations.optimized.client import (
    Ambiguous,
    Created,
    OptimizedClient,
    RateLimited,
    Rejected,
    Unavailable,
    interpret,
    retry_at,
)
from relay.destinations.optimized.models import BatchRequest, UpstreamCampaign, UpstreamSchedule

GROUP = "cc6cdf44-acf4-4b39-bd17-55b70b769812"
NOW = 1_800_000_000.0
CREATED = {
    "uuid": "b1",
    "profiles": [{"uuid": "p1", "external_id": "EXT-1"}, {"uuid": "p2", "external_id": "EXT-2"}],
    "schedule": {"uuid": "s1", "status": "scheduled", "start_at": "2027-01-01T10:00:00.000000Z"},
    "group": {"uuid": GROUP},
    "profile_tag": {"name": "x"},
}
REQUEST = BatchRequest(
    profiles=[{"person": {"phone_number": "+35840123456"}}],
    schedule=UpstreamSchedule(start_at="2027-01-01 10:00:00", campaign=UpstreamCampaign(uuid="c1")),
)


def _client(handler) -> OptimizedClient:  # type: ignore[no-untyped-def]
    return OptimizedClient("https://optimized.test", "tok-123", transport=httpx.MockTransport(handler))


def test_201_is_created_and_the_request_is_as_documented() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=CREATED)

    outcome = _client(handler).create_batch(GROUP, REQUEST, now=NOW)
    assert isinstance(outcome, Created)
    assert outcome.batch.uuid == "b1"
    assert [p.uuid for p in outcome.batch.profiles] == ["p1", "p2"]
    assert outcome.batch.schedule is not None
    assert outcome.batch.schedule.uuid == "s1"
    [request] = seen
    assert request.method == "POST"
    assert request.url == f"https://optimized.test/v1/groups/{GROUP}/batches"
    assert request.headers["authorization"] == "Bearer tok-123"
    assert json.loads(request.content) == {
        "profiles": [{"person": {"phone_number": "+35840123456"}}],
        "schedule": {"start_at": "2027-01-01 10:00:00", "campaign": {"uuid": "c1"}},
    }


def test_connect_error_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    outcome = _client(handler).create_batch(GROUP, REQUEST, now=NOW)
    assert isinstance(outcome, Unavailable)
    assert outcome.status is None
    assert outcome.message.startswith("not sent")


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError])
def test_failure_after_sending_is_ambiguous(error: type[httpx.TransportError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("gone", request=request)

    outcome = _client(handler).create_batch(GROUP, REQUEST, now=NOW)
    assert isinstance(outcome, Ambiguous)
    assert error.__name__ in outcome.message


def test_write_timeout_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.WriteTimeout("slow", request=request)

    assert isinstance(_client(handler).create_batch(GROUP, REQUEST, now=NOW), Unavailable)


def test_real_read_timeout_over_loopback_is_ambiguous() -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    client = OptimizedClient(f"http://127.0.0.1:{server.getsockname()[1]}", "t", read_timeout_s=0.2)
    try:
        assert isinstance(client.create_batch(GROUP, REQUEST, now=NOW), Ambiguous)
    finally:
        client.close()
        for conn in accepted:
            conn.close()
        server.close()


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_interpret_429_uses_the_reset_header() -> None:
    outcome = interpret(
        _response(429, {"message": "Too Many Attempts."}, {"X-Ratelimit-Reset": "1800000030"}), now=NOW
    )
    assert isinstance(outcome, RateLimited)
    assert outcome.retry_at == 1_800_000_030
    assert outcome.headers["x-ratelimit-reset"] == "1800000030"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Ratelimit-Reset": "1800000042"}, NOW + 42),
        ({"X-Ratelimit-Reset": "7"}, NOW + 7),  # seconds until reset
        ({"Retry-After": "5"}, NOW + 5),
        ({"Retry-After": "Fri, 15 Jan 2027 08:00:00 GMT"}, None),  # the date itself
        ({"X-Ratelimit-Reset": "soon", "Retry-After": "3"}, NOW + 3),
        ({}, NOW + 60),
        # Headers that do not parse count as absent (they raised out of the dispatcher before).
        ({"Retry-After": "soon"}, NOW + 60),
        ({"Retry-After": "Fri, 99 Foo 2027 25:61:00 GMT"}, NOW + 60),
        ({"Retry-After": "nan"}, NOW + 60),
        ({"X-Ratelimit-Reset": "inf"}, NOW + 60),
        ({"Retry-After": "-30"}, NOW),  # never in the past
        ({"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, NOW + 3600),  # never more than an hour
        ({"Retry-After": "86400"}, NOW + 3600),
    ],
)
def test_retry_at(headers: dict[str, str], expected: float | None) -> None:
    if expected is None:
        from email.utils import parsedate_to_datetime

        expected = parsedate_to_datetime(headers["Retry-After"]).timestamp()
    assert retry_at(httpx.Headers(headers), NOW) == expected


@pytest.mark.parametrize("status", [401, 403, 404, 422, 400])
def test_4xx_is_rejected_with_the_upstream_message(status: int) -> None:
    body = {"message": "The given data was invalid.", "errors": {"profiles.0.person": ["required"]}}
    outcome = interpret(_response(status, body), now=NOW)
    assert isinstance(outcome, Rejected)
    assert outcome.status == status
    assert outcome.message == f"HTTP {status}: The given data was invalid. (profiles.0.person: required)"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_unavailable(status: int) -> None:
    outcome = interpret(httpx.Response(status, text="<html>oops</html>"), now=NOW)
    assert isinstance(outcome, Unavailable)
    assert outcome.status == status
    assert "oops" in outcome.message


def test_created_with_unreadable_body_is_ambiguous() -> None:
    assert isinstance(interpret(_response(201, {"no": "uuid"}), now=NOW), Ambiguous)
