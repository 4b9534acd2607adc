"""Inbound Optimized.app results over the local stack: signature checks on the raw bytes,
de-duplication, linking to executions, counters, listing, and forwarding (signed, retried,
dead-lettered, stopped by a 410) to a real HTTP receiver on loopback. No fixed sleeps."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import Api, chunk_items, dlq_messages, queue_depth, relay_env, scan_all, wait_for
from relay.results.signatures import standard_headers, verify_standard
from relay_local.gateway import build_http_event
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SECRET = "whsec_" + base64.b64encode(b"inbound-secret-inbound-secret-32").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the-previous-inbound-secret-0000").decode()
RESULTS_SECRET = "whsec_" + base64.b64encode(b"results-secret-results-secret-32").decode()
PATH = "/v1/webhooks/optimized"


# -- a customer endpoint on loopback ----------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request; answers from ``script`` (status, headers) in turn, then ``default``."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (200, {})
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.received.append(Received(headers, body, time.monotonic()))
            return self.script.pop(0) if self.script else self.default


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status, headers = state.answer({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/results"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def results_env(relay: LocalStack, receiver: Receiver) -> Iterator[dict[str, str]]:
    env = {
        "WEBHOOK_SECRET": SECRET,
        "RESULTS_WEBHOOK_URL": receiver.url,
        "RESULTS_WEBHOOK_SECRET": RESULTS_SECRET,
        "RESULTS_RETRY_BASE_S": "0",
        "RESULTS_MAX_ATTEMPTS": "3",
        "WEBHOOK_MAX_BYTES": "1048576",
    }
    with relay_env(**env):
        yield env


# -- helpers ----------------------------------------------------------------------------------------


def post(
    stack: LocalStack,
    payload: Any,
    *,
    secret: str = SECRET,
    msg_id: str | None = None,
    timestamp: int | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    signed = standard_headers(
        secret, msg_id or f"msg_{time.monotonic_ns()}", timestamp or int(time.time()), body
    )
    all_headers = {"content-type": "application/json", **signed, **(headers or {})}
    return httpx.post(f"{stack.api_url}{PATH}", content=body, headers=all_headers, timeout=30)


def error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def stored_results(ddb: Any) -> list[dict[str, Any]]:
    return [i for i in scan_all(ddb) if i["pk"]["S"].startswith("WEBHOOK#") or "RESULT#" in i["sk"]["S"]]


def completed_execution(api: Api, ddb: Any, group: str, n: int = 2) -> tuple[str, list[dict[str, Any]]]:
    """An execution sent upstream, with its profiles as the sandbox created them."""
    execution_id = api.trigger(group, n).json()["execution_id"]
    api.wait(execution_id)
    sent = [p for c in chunk_items(ddb, execution_id) for p in json.loads(c["upstream_profiles_json"])]
    # Links are written just after the chunk is finished: wait for the last one.
    wait_for(
        lambda: ddb.get_item(
            TableName="LinksTable", Key={"pk": {"S": f"LINK#profile#{sent[-1]['uuid']}"}, "sk": {"S": "LINK"}}
        ).get("Item"),
        what="result links",
    )
    return execution_id, sent


def until(fetch: Any, ok: Any, what: str, timeout: float = 30) -> Any:
    """Poll ``fetch()`` until ``ok(value)``; returns the value."""
    return wait_for(lambda: value if ok(value := fetch()) else None, timeout=timeout, what=what)


def results_of(api: Api, execution_id: str) -> dict[str, int]:
    return api.execution(execution_id)["results"]


# -- the whole path ---------------------------------------------------------------------------------


def test_results_of_a_completed_execution_are_counted_listed_and_forwarded_once(
    relay: LocalStack, api: Api, ddb: Any, group: str, receiver: Receiver, results_env: dict[str, str]
) -> None:
    execution_id, sent = completed_execution(api, ddb, group)
    p0, p1 = sent
    delivered = {"id": "evt-1", "type": "sms.delivered", "profile": {"uuid": p0["uuid"]}}
    answer = post(relay, delivered, msg_id="msg_a")
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 1, "duplicates": 0, "event_ids": ["evt-1"]}
    # An array: one by profile uuid, one by external_id only, one redelivered inside the array.
    batch = [
        {"id": "evt-2", "event": "call.no_answer", "data": {"profile_uuid": p1["uuid"]}},
        {"id": "evt-3", "type": "email.opened", "profile": {"external_id": p0["external_id"]}},
        delivered,
    ]
    answer = post(relay, batch, msg_id="msg_b")
    assert answer.status_code == 202, answer.text
    assert (answer.json()["accepted"], answer.json()["duplicates"]) == (2, 1)
    # The platform redelivers the first request as it was: 2xx, nothing changes.
    again = post(relay, delivered, msg_id="msg_a")
    assert again.status_code == 202
    assert again.json()["duplicates"] == 1

    counts = until(lambda: results_of(api, execution_id), lambda r: sum(r.values()) == 3, "counters")
    assert counts == {
        "delivered": 1, "failed": 0, "opened": 1, "answered": 0,
        "no_answer": 1, "replied": 0, "opted_out": 0, "unknown": 0, "mirror_skipped": 0,
    }  # fmt: skip

    listed = api.http.get(f"/v1/executions/{execution_id}/results").json()
    by_id = {r["event_id"]: r for r in listed["items"]}
    assert set(by_id) == {"evt-1", "evt-2", "evt-3"}
    assert by_id["evt-1"]["ref"] == p0["ref"] == "ref-0"
    assert by_id["evt-2"]["ref"] == "ref-1"
    assert by_id["evt-3"]["profile_index"] == 0
    assert by_id["evt-1"]["raw"] == delivered
    assert all(r["matched"] and r["execution_id"] == execution_id for r in listed["items"])
    only = api.http.get(f"/v1/executions/{execution_id}/results", params={"type": "call.no_answer"}).json()
    assert [r["event_id"] for r in only["items"]] == ["evt-2"]
    first = api.http.get(f"/v1/executions/{execution_id}/results", params={"limit": 2}).json()
    rest = api.http.get(
        f"/v1/executions/{execution_id}/results", params={"limit": 2, "next_token": first["next_token"]}
    ).json()
    assert len(first["items"]) == 2
    assert {r["event_id"] for r in first["items"] + rest["items"]} == set(by_id)

    # Forwarded: each result once, signed with RESULTS_WEBHOOK_SECRET, with execution and ref.
    wait_for(lambda: len(receiver.received) >= 3, what="3 forwarded results")
    assert (
        queue_depth(relay.sqs if hasattr(relay, "sqs") else _sqs(relay), relay.resources.url("ResultsQueue"))
        == 0
    )
    forwarded = {r.json["data"]["event_id"]: r for r in receiver.received}
    assert len(receiver.received) == 3
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 3
    for request in receiver.received:
        verify_standard(request.headers, request.body, [RESULTS_SECRET], tolerance_s=60, now=time.time())
    data = forwarded["evt-1"].json["data"]
    assert forwarded["evt-1"].json["type"] == "result.sms.delivered"
    assert (data["execution_id"], data["ref"], data["type"]) == (execution_id, "ref-0", "sms.delivered")


def _sqs(stack: LocalStack) -> Any:
    import boto3
    from relay_local import aws

    return boto3.client(
        "sqs", endpoint_url=stack.moto_endpoint, region_name="us-east-1", **aws.DUMMY_CREDENTIALS
    )


# -- refused requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["forged", "stale", "future", "unsigned", "wrong_secret", "body_changed"],
)
def test_bad_signatures_are_refused_and_nothing_is_stored(
    relay: LocalStack, ddb: Any, sqs: Any, results_env: dict[str, str], case: str
) -> None:
    event = {"id": "evt-x", "type": "sms.delivered"}
    body = json.dumps(event).encode()
    now = int(time.time())
    headers = standard_headers(SECRET, "msg_x", now, body)
    if case == "forged":
        headers["webhook-signature"] = "v1," + base64.b64encode(b"f" * 32).decode()
    elif case == "stale":
        headers = standard_headers(SECRET, "msg_x", now - 3600, body)  # far outside the 300 s tolerance
    elif case == "future":
        headers = standard_headers(SECRET, "msg_x", now + 3600, body)  # a wide margin: never flaky
    elif case == "unsigned":
        headers = {}
    elif case == "wrong_secret":
        headers = standard_headers(OLD_SECRET, "msg_x", now, body)
    elif case == "body_changed":
        body = json.dumps(event, indent=1).encode()  # same JSON, other bytes
    response = httpx.post(f"{relay.api_url}{PATH}", content=body, headers=headers)
    error(response, 401, "invalid_signature")
    assert stored_results(ddb) == []
    assert queue_depth(sqs, relay.resources.url("ResultsQueue")) == 0


def test_a_rotated_secret_is_accepted_while_both_are_configured(
    relay: LocalStack, results_env: dict[str, str]
) -> None:
    with relay_env(WEBHOOK_SECRET=f"{SECRET}, {OLD_SECRET}"):
        assert post(relay, {"id": "r1"}, secret=OLD_SECRET).status_code == 202
        assert post(relay, {"id": "r2"}, secret=SECRET).status_code == 202
    with relay_env(WEBHOOK_SECRET=SECRET):
        error(post(relay, {"id": "r3"}, secret=OLD_SECRET), 401, "invalid_signature")


def test_oversized_and_invalid_json_bodies(relay: LocalStack, ddb: Any, results_env: dict[str, str]) -> None:
    with relay_env(WEBHOOK_MAX_BYTES="2048"):
        error(post(relay, {"pad": "x" * 3000}), 413, "payload_too_large")
    error(post(relay, None, raw=b'{"type": "sms.delivered",'), 400, "invalid_json")
    assert stored_results(ddb) == []


def test_a_base64_encoded_body_is_verified_on_its_decoded_bytes(
    relay: LocalStack, ddb: Any, results_env: dict[str, str]
) -> None:
    body = json.dumps({"id": "evt-b64", "type": "sms.failed"}).encode()
    headers = {
        "content-type": "application/octet-stream",
        **standard_headers(SECRET, "m", int(time.time()), body),
    }
    event = build_http_event("POST", PATH, headers, body, f"POST {PATH}")
    assert event["isBase64Encoded"] is True
    answer = relay.function("WebhooksFunction").invoke(event)
    assert answer["statusCode"] == 202, answer
    assert json.loads(answer["body"])["event_ids"] == ["evt-b64"]
    assert any(i["pk"]["S"] == "WEBHOOK#optimized#evt-b64" for i in stored_results(ddb))


def test_unknown_types_and_unmatched_results_are_kept_and_listed(
    relay: LocalStack, api: Api, receiver: Receiver, results_env: dict[str, str]
) -> None:
    no_id = {"type": "survey.answered", "profile": {"uuid": "nobody-we-sent"}}
    assert post(relay, no_id).json()["accepted"] == 1
    # Redelivered without any id: its content hash makes it the same event.
    assert post(relay, no_id).json() | {"event_ids": None} == {
        "accepted": 0,
        "duplicates": 1,
        "event_ids": None,
    }
    assert post(relay, {"id": "u2", "type": "sms.reply", "phone": "+35840000000"}).status_code == 202

    def unmatched() -> list[dict[str, Any]]:
        return api.http.get("/v1/results", params={"unmatched": "true"}).json()["items"]

    items = until(unmatched, lambda u: len(u) == 2, "unmatched results")
    by_type = {i["type"]: i for i in items}
    assert set(by_type) == {"unknown", "sms.reply"}
    assert by_type["unknown"]["source_type"] == "survey.answered"
    assert by_type["unknown"]["event_id"].startswith("sha256:")
    assert not by_type["unknown"]["matched"]
    assert by_type["unknown"]["execution_id"] is None
    replies = api.http.get("/v1/results", params={"unmatched": "true", "type": "sms.reply"}).json()["items"]
    assert [r["event_id"] for r in replies] == ["u2"]
    wait_for(lambda: len(receiver.received) == 2, what="unmatched results forwarded too")
    error(api.http.get("/v1/results", params={"unmatched": "false"}), 400, "unsupported_filter")
    error(api.http.get("/v1/executions/no-such-execution/results"), 404, "not_found")


def test_an_unknown_type_for_a_known_profile_counts_as_unknown(
    relay: LocalStack, api: Api, ddb: Any, group: str, results_env: dict[str, str]
) -> None:
    execution_id, sent = completed_execution(api, ddb, group, n=1)
    assert (
        post(relay, {"id": "k1", "type": "carrier.pigeon", "profile": {"uuid": sent[0]["uuid"]}}).status_code
        == 202
    )
    counts = until(lambda: results_of(api, execution_id), lambda r: r["unknown"], "unknown counted")
    assert counts["unknown"] == 1
    assert sum(counts.values()) == 1


# -- forwarding failures ----------------------------------------------------------------------------


def test_forwarding_retries_with_the_same_webhook_id_and_honours_retry_after(
    relay: LocalStack, receiver: Receiver, results_env: dict[str, str]
) -> None:
    receiver.script = [(503, {"Retry-After": "2"}), (429, {"Retry-After": "0"}), (500, {})]
    assert post(relay, {"id": "f1", "type": "sms.delivered"}).status_code == 202
    with relay_env(RESULTS_MAX_ATTEMPTS="5"):
        wait_for(lambda: len(receiver.received) == 4, what="4 attempts", timeout=30)
    attempts = receiver.received
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert attempts[1].at - attempts[0].at >= 1.5  # waited as the 503's Retry-After said
    for attempt in attempts:
        verify_standard(attempt.headers, attempt.body, [RESULTS_SECRET], tolerance_s=60, now=time.time())


def test_forwarding_gives_up_after_max_attempts_into_the_dead_letter_queue(
    relay: LocalStack, sqs: Any, receiver: Receiver, results_env: dict[str, str]
) -> None:
    receiver.default = (500, {})
    with relay_env(RESULTS_MAX_ATTEMPTS="2"):
        assert post(relay, {"id": "d1", "type": "sms.failed"}).status_code == 202
        dead = wait_for(lambda: dlq_messages(sqs, relay.resources.url("ResultsDeadLetterQueue")), what="DLQ")
    assert len(receiver.received) == 2
    assert dead[0]["result"]["event_id"] == "d1"
    assert "HTTP 500 after 2 attempts" in dead[0]["reason"]


def test_a_410_disables_forwarding_but_results_are_still_stored(
    relay: LocalStack, api: Api, ddb: Any, receiver: Receiver, results_env: dict[str, str]
) -> None:
    receiver.default = (410, {})
    assert post(relay, {"id": "g1", "type": "sms.delivered"}).status_code == 202
    wait_for(
        lambda: any(i["pk"]["S"].startswith("FORWARDING#") for i in scan_all(ddb)), what="forwarding disabled"
    )
    assert post(relay, {"id": "g2", "type": "sms.delivered"}).status_code == 202

    def listed() -> list[dict[str, Any]]:
        return api.http.get("/v1/results", params={"unmatched": "true"}).json()["items"]

    wait_for(lambda: len(listed()) == 2, what="both results stored")
    wait_for(lambda: queue_depth(_sqs(relay), relay.resources.url("ResultsQueue")) == 0, what="queue drained")
    assert len(receiver.received) == 1


def test_a_refused_signature_is_counted_as_a_metric(
    relay: LocalStack, results_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    body = b'{"id": "m1"}'
    headers = standard_headers(OLD_SECRET, "m", int(time.time()), body)
    answer = relay.function("WebhooksFunction").invoke(
        build_http_event("POST", PATH, headers, body, f"POST {PATH}")
    )
    assert answer["statusCode"] == 401
    emitted = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')
    ]
    assert any(m.get("WebhookSignatureRejected") in (1, 1.0, [1.0]) for m in emitted), emitted


# -- a customer outage: the retry schedule, disabling, replay; a rotated results secret --------------


def test_an_outage_longer_than_the_schedule_disables_forwarding_until_a_replay(
    relay: LocalStack, api: Api, ddb: Any, receiver: Receiver, results_env: dict[str, str]
) -> None:
    # Compressed: retries after 1 s and 1 s (the whole schedule), three attempts in all.
    receiver.default = (503, {})
    with relay_env(RESULTS_RETRY_SCHEDULE_S="1,1", RESULTS_MAX_ATTEMPTS="3"):
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
        assert post(relay, {"id": "o1", "type": "sms.delivered"}).status_code == 202

        def state() -> dict[str, Any]:
            items = [i for i in scan_all(ddb) if i["pk"]["S"].startswith("FORWARDING#")]
            return items[0] if items else {}

        wait_for(lambda: state().get("disabled"), what="forwarding disabled after the schedule", timeout=30)
        assert len(receiver.received) == 3
        first_ids = {r.headers["webhook-id"] for r in receiver.received}
        assert len(first_ids) == 1
        assert "retry schedule" in state()["reason"]["S"]

        # Disabled: results are still stored, not forwarded; the state counts them.
        assert post(relay, {"id": "o2", "type": "sms.failed"}).status_code == 202
        wait_for(lambda: state().get("held"), what="the held result counted")
        assert len(receiver.received) == 3

        # The customer is back; the operator replays the window: forwarding on, each result once.
        receiver.default = (200, {})
        unauthenticated = httpx.post(f"{relay.api_url}/v1/results/replay", json={"since": since}, timeout=30)
        assert unauthenticated.status_code == 401
        invalid = api.http.post("/v1/results/replay", json={"since": "yesterday"})
        assert invalid.status_code == 422
        answer = api.http.post("/v1/results/replay", json={"since": since})
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert (body["queued"], body["was_disabled"], body["held"], body["forwarding"]) == (
            2,
            True,
            1,
            "enabled",
        )
        wait_for(lambda: len(receiver.received) == 5, what="both results forwarded again")
        replayed = {r.json["data"]["event_id"]: r.headers["webhook-id"] for r in receiver.received[3:]}
        assert set(replayed) == {"o1", "o2"}
        assert replayed["o1"] in first_ids  # its original webhook-id: the customer de-duplicates
        assert not state().get("disabled")

        # Forwarding is on again for new results.
        assert post(relay, {"id": "o3", "type": "sms.delivered"}).status_code == 202
        wait_for(lambda: len(receiver.received) == 6, what="a new result forwarded")


def test_forwards_are_signed_with_both_secrets_while_the_results_secret_rotates(
    relay: LocalStack, receiver: Receiver, results_env: dict[str, str]
) -> None:
    new_secret = "whsec_" + base64.b64encode(b"the-new-results-secret-000000000").decode()
    with relay_env(RESULTS_WEBHOOK_SECRET=f"{new_secret},{RESULTS_SECRET}"):
        assert post(relay, {"id": "s1", "type": "sms.delivered"}).status_code == 202
        wait_for(lambda: receiver.received, what="a forwarded result")
    [request] = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for known in ([RESULTS_SECRET], [new_secret]):  # a receiver that knows either one accepts it
        verify_standard(request.headers, request.body, known, tolerance_s=60, now=time.time())
