"""Batch.com, the parts without a stack: validation of profile operations (each error naming its
field), the client's outcomes for every answer Batch documents, packing, partial errors mapped
to the caller's operations, and the updates token bucket against Batch's bucket."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from pydantic import ValidationError
from relay.core.http import validation_error
from relay.core.limiter.token_bucket import TokenBucket
from relay.core.outcomes import Ambiguous, RateLimited, Unavailable
from relay.core.secrets import SecretSource
from relay.core.settings import reset_settings
from relay.core.store.table import Table
from relay.destinations.batch.client import Accepted, BatchClient, Rejected
from relay.destinations.batch.dispatcher import ProfileDispatcher
from relay.destinations.batch.models import ProfilesRequest
from relay.destinations.batch.packing import pack, updates_in
from relay.destinations.batch.store import PendingChunk


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("BATCH_EVENT_NAME_PATTERN", "BATCH_MAX_TEXT_LENGTH", "BATCH_MAX_EVENTS_PER_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    yield
    reset_settings()


def op(**extra: Any) -> dict[str, Any]:
    return {"identifiers": {"custom_id": "u1"}, **extra}


def errors_of(*operations: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(field, message) of every error, as the API answers them."""
    with pytest.raises(ValidationError) as raised:
        ProfilesRequest.model_validate({"operations": list(operations)})
    return [(d.field, d.message) for d in validation_error(raised.value.errors()).details]


# -- validation ------------------------------------------------------------------------------------


def test_a_full_operation_in_batchs_shape_is_accepted() -> None:
    now = datetime.now(UTC).isoformat()
    request = ProfilesRequest.model_validate(
        {
            "operations": [
                {
                    "identifiers": {"custom_id": "u1"},
                    "ref": "crm-1",
                    "attributes": {
                        "$email_address": "a@example.com",
                        "$email_marketing": "subscribed",
                        "$sms_marketing": "unsubscribed",
                        "$phone_number": None,
                        "$timezone": "Europe/Paris",
                        "plan": "gold",
                        "visits": 3,
                        "score": 1.5,
                        "vip": True,
                        "signed_up": "date(2024-01-31T10:00:00Z)",
                        "avatar": "url(https://example.com/a.png)",
                        "interests": ["cars", "boats"],
                        "tags": {"$add": ["new"]},
                        "old": None,
                    },
                    "events": [
                        {
                            "name": "purchase",
                            "time": now,
                            "attributes": {"$label": "x", "$tags": ["a"], "amount": 9},
                        }
                    ],
                },
                {"identifiers": {"installation": "inst-1"}, "attributes": {"plan": "free"}},
            ]
        }
    )
    first = request.operations[0]
    assert first.ref == "crm-1"
    upstream = first.upstream()
    assert "ref" not in upstream
    assert upstream["attributes"]["old"] is None
    assert upstream["identifiers"] == {"custom_id": "u1"}
    assert request.operations[1].upstream() == {
        "identifiers": {"installation": "inst-1"},
        "attributes": {"plan": "free"},
    }


@pytest.mark.parametrize(
    "identifiers",
    [{"custom_id": "u1", "installation": "i1"}, {}, {"custom_id": None, "installation": None}],
)
def test_exactly_one_identifier_with_the_field_named(identifiers: dict[str, Any]) -> None:
    found = errors_of(op(), op(), {"identifiers": identifiers})
    assert found == [("operations[2].identifiers", "exactly one of custom_id or installation is required")]


@pytest.mark.parametrize(
    ("operation", "field", "words"),
    [
        (op(events=[{"name": "Bad-Name"}]), "operations[0].events[0].name", "BATCH_EVENT_NAME_PATTERN"),
        (op(events=[{"name": "x" * 31}]), "operations[0].events[0].name", "must match"),
        (op(attributes={"plan": "x" * 301}), "operations[0].attributes", "BATCH_MAX_TEXT_LENGTH"),
        (op(attributes={"plan": ""}), "operations[0].attributes", "1 to 300"),
        (op(attributes={"$unknown": "x"}), "operations[0].attributes", "not a native attribute"),
        (op(attributes={"$sms_marketing": "yes"}), "operations[0].attributes", "subscribed"),
        (op(attributes={"$email_address": "nope"}), "operations[0].attributes", "email"),
        (op(attributes={"$phone_number": "0612"}), "operations[0].attributes", "E.164"),
        (op(attributes={"bad name": 1}), "operations[0].attributes", "BATCH_ATTRIBUTE_NAME_PATTERN"),
        (op(attributes={"d": "date(yesterday)"}), "operations[0].attributes", "ISO 8601"),
        (op(attributes={"u": "url(ftp://x)"}), "operations[0].attributes", "http(s)"),
        (op(attributes={"t": {"$remove": ["a"]}}), "operations[0].attributes", "$add"),
        (op(attributes={"t": {"$add": []}}), "operations[0].attributes", "$add"),
        (op(attributes={"o": {"nested": 1}}), "operations[0].attributes", "$add"),
        (op(events=[{"name": "e"}] * 16), "operations[0].events", "BATCH_MAX_EVENTS_PER_PROFILE"),
        (op(identifiers={"custom_id": "x" * 513}), "operations[0].identifiers.custom_id", "512"),
        (op(unknown=1), "operations[0].unknown", "is not a field"),
        (
            op(events=[{"name": "e", "attributes": {"$label": 3}}]),
            "operations[0].events[0].attributes",
            "$label",
        ),
    ],
)
def test_each_rule_names_the_field(operation: dict[str, Any], field: str, words: str) -> None:
    found = errors_of(operation)
    assert len(found) == 1, found
    assert found[0][0] == field
    assert words in found[0][1]


def test_events_must_be_recent_and_never_ahead() -> None:
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    found = errors_of(op(events=[{"name": "e", "time": old}]), op(events=[{"name": "e", "time": ahead}]))
    assert [f for f, _ in found] == ["operations[0].events[0].time", "operations[1].events[0].time"]
    assert "BATCH_EVENT_MAX_AGE_S" in found[0][1]
    assert "future" in found[1][1]


def test_unverified_rules_follow_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_EVENT_NAME_PATTERN", r"^[A-Za-z-]{1,50}$")
    monkeypatch.setenv("BATCH_MAX_TEXT_LENGTH", "5")
    reset_settings()
    ProfilesRequest.model_validate({"operations": [op(events=[{"name": "Bad-Name"}])]})
    assert "BATCH_MAX_TEXT_LENGTH" in errors_of(op(attributes={"a": "123456"}))[0][1]


def test_an_empty_request_is_refused() -> None:
    assert errors_of()[0][0] == "operations"


# -- the client: every documented answer as an outcome ----------------------------------------------


def client_answering(
    *answers: httpx.Response, seen: list[httpx.Request] | None = None, **keys: Any
) -> BatchClient:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return queue.pop(0)

    return BatchClient(
        "https://api.batch.test/2.0",
        keys.get("rest_key", "rest"),
        keys.get("project_key", "project_1"),
        transport=httpx.MockTransport(handler),
    )


def test_requests_carry_both_keys_and_the_operations() -> None:
    seen: list[httpx.Request] = []
    client = client_answering(httpx.Response(202, json={"code": "SUCCESS"}), seen=seen)
    outcome = client.update_profiles([op()])
    assert outcome == Accepted(202, {"code": "SUCCESS"})
    request = seen[0]
    assert request.url.path == "/2.0/profiles/update"
    assert request.headers["authorization"] == "Bearer rest"
    assert request.headers["x-batch-project"] == "project_1"
    assert json.loads(request.content) == [op()]


def test_the_generic_call_passes_params_and_body() -> None:
    seen: list[httpx.Request] = []
    client = client_answering(httpx.Response(200, json={"audiences": []}), seen=seen)
    outcome = client.call("GET", "/audiences/list", params={"limit": 10})
    assert isinstance(outcome, Accepted)
    assert outcome.body == {"audiences": []}
    assert seen[0].url.params["limit"] == "10"


def test_partial_errors_come_back_with_their_bulk_indexes() -> None:
    body = {
        "code": "SUCCESS_WITH_PARTIAL_ERRORS",
        "errors": [{"category": "events", "bulk_index": 1, "reason": "x"}],
    }
    outcome = client_answering(httpx.Response(202, json=body)).update_profiles([op(), op()])
    assert isinstance(outcome, Accepted)
    assert outcome.code == "SUCCESS_WITH_PARTIAL_ERRORS"
    assert outcome.errors[0]["bulk_index"] == 1


def test_a_429_without_retry_after_leaves_the_back_off_to_the_caller() -> None:
    outcome = client_answering(
        httpx.Response(429, json={"error_code": "TOO_MANY_REQUESTS", "error_message": "slow down"})
    ).update_profiles([op()], now=1000.0)
    assert outcome == RateLimited(retry_at=0.0, headers={})


def test_a_429_with_retry_after_is_honoured() -> None:
    outcome = client_answering(httpx.Response(429, headers={"Retry-After": "7"})).update_profiles(
        [op()], now=1000.0
    )
    assert isinstance(outcome, RateLimited)
    assert outcome.retry_at == 1007.0


@pytest.mark.parametrize(
    ("status", "code"), [(400, "BAD_REQUEST"), (401, "AUTHENTICATION_INVALID"), (403, "X")]
)
def test_4xx_is_rejected_with_batchs_error_code_and_message(status: int, code: str) -> None:
    answer = httpx.Response(status, json={"error_code": code, "error_message": "why"})
    outcome = client_answering(answer, answer).update_profiles([op()])
    assert outcome == Rejected(status, code, "why")


def test_a_4xx_without_batchs_body_still_says_what_came_back() -> None:
    outcome = client_answering(httpx.Response(400, text="<html>bad</html>")).update_profiles([op()])
    assert isinstance(outcome, Rejected)
    assert outcome.error_code == "HTTP_400"
    assert "bad" in outcome.error_message


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_unavailable(status: int) -> None:
    outcome = client_answering(httpx.Response(status, json={"error_code": "MAINTENANCE"})).update_profiles(
        [op()]
    )
    assert isinstance(outcome, Unavailable)
    assert outcome.status == status


def test_a_timeout_after_sending_is_ambiguous_and_a_refused_connection_is_not() -> None:
    def timing_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    def refusing(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for handler, kind in ((timing_out, Ambiguous), (refusing, Unavailable)):
        client = BatchClient("https://b.test", "r", "p", transport=httpx.MockTransport(handler))
        assert isinstance(client.update_profiles([op()]), kind)


def test_a_401_reads_the_keys_again_once() -> None:
    stored = {"value": "old"}

    def fetch(name: str, max_age_s: float, force: bool) -> str:
        if force:  # the secret was rotated meanwhile: a forced read sees the new value
            stored["value"] = "new"
        return stored["value"]

    rest_key = SecretSource(name="batch-rest", fetch=fetch)
    seen: list[httpx.Request] = []
    client = client_answering(
        httpx.Response(401, json={"error_code": "AUTHENTICATION_INVALID", "error_message": "no"}),
        httpx.Response(202, json={"code": "SUCCESS"}),
        seen=seen,
        rest_key=rest_key,
    )
    assert isinstance(client.update_profiles([op()]), Accepted)
    assert [r.headers["authorization"] for r in seen] == ["Bearer old", "Bearer new"]


# -- packing and partial errors mapped back ---------------------------------------------------------


def chunk(execution: str, seq: int, size: int, at: float = 0.0) -> PendingChunk:
    return PendingChunk(execution, seq, "lane", size, at, f"{at}#{execution}#{seq}")


def test_packing_fills_a_call_in_order_and_lets_smaller_chunks_fill_the_rest() -> None:
    chunks = [chunk("a", 0, 150), chunk("b", 0, 100), chunk("c", 0, 50)]
    call, full = pack(chunks, 200)
    assert [c.execution_id for c in call] == ["a", "c"]
    assert full
    call, full = pack([chunk("a", 0, 1), chunk("b", 0, 1)], 200)
    assert len(call) == 2
    assert not full


def test_an_update_is_one_distinct_profile_of_a_call() -> None:
    operations = [op(), op(), {"identifiers": {"installation": "u1"}}, {"identifiers": {"custom_id": "u2"}}]
    assert updates_in(operations) == 3


def test_each_partial_error_is_mapped_to_its_execution_index_and_ref() -> None:
    a, b = chunk("exec-a", 0, 2), chunk("exec-b", 3, 1)
    a.operations = [{"i": 0, "ref": "a0", "op": op()}, {"i": 1, "ref": None, "op": op()}]
    b.operations = [{"i": 600, "ref": "b600", "op": op()}]
    entries = [(c, e) for c in (a, b) for e in c.operations]
    dispatcher = ProfileDispatcher(
        SimpleNamespace(
            settings=SimpleNamespace(batch_operations_per_call=200), limiter=SimpleNamespace(capacity=700)
        )
    )
    answer = Accepted(
        202,
        {
            "code": "SUCCESS_WITH_PARTIAL_ERRORS",
            "errors": [
                {"category": "events", "bulk_index": 2, "reason": "bad name", "attribute": "e"},
                {"category": "identifiers", "bulk_index": 1, "reason": "both"},
                {"category": "x", "bulk_index": 99, "reason": "out of range"},
            ],
        },
    )
    results = {r.chunk.execution_id: r for r in dispatcher._delivered("call", [a, b], entries, answer, 5.0)}
    assert results["exec-a"].delivered == 1
    assert results["exec-a"].failed == 1
    assert results["exec-a"].fields["errors"] == [
        {"index": 1, "ref": None, "category": "identifiers", "reason": "both"}
    ]
    assert results["exec-b"].fields["errors"] == [
        {"index": 600, "ref": "b600", "category": "events", "reason": "bad name", "attribute": "e"}
    ]
    assert results["exec-b"].delivered == 0
    assert results["exec-b"].failed == 1


# -- the updates token bucket against Batch's ---------------------------------------------------------


@pytest.fixture
def table() -> Iterator[Table]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Table(client, "t")


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)


def conforms(arrivals: list[tuple[float, int]], rate: float, burst: float) -> bool:
    """Every interval [s, t] holds at most burst + rate * (t - s) updates (a full bucket)."""
    ordered = sorted(arrivals)
    for i in range(len(ordered)):
        total = 0
        for j in range(i, len(ordered)):
            total += ordered[j][1]
            if total > burst + rate * (ordered[j][0] - ordered[i][0]) + 1e-6:
                return False
    return True


def test_takes_delayed_by_up_to_the_slack_always_fit_batchs_bucket(table: Table) -> None:
    t = FakeTime()
    rate, burst, slack = 300.0, 1000.0, 1.0
    bucket = TokenBucket(
        table=table, name="u", rate=rate, burst=burst, slack_s=slack, clock=t.clock, sleep=t.sleep
    )
    assert bucket.capacity == 700
    rng = random.Random(7)
    takes = []
    for _ in range(150):
        n = rng.randint(1, 200)
        taken = bucket.acquire(n, max_wait_s=5.0)
        assert taken is not None
        takes.append((taken, n))
        t.now += rng.choice([0.0, 0.0, 0.01, 0.3, 2.0])  # bursts, then quiet moments
    for seed in range(5):
        delays = random.Random(seed)
        arrivals = [(at + delays.uniform(0, slack), n) for at, n in takes]
        assert conforms(arrivals, rate, burst)
    # Without the slack's headroom, the same delays could break Batch's bucket: the proof needs it.
    assert not conforms([(0.0, 0), (1.0, 700), (1.0, 300), (1.0, 300)], rate, burst)


def test_a_take_waits_for_tokens_and_a_block_holds_every_take(table: Table) -> None:
    t = FakeTime()
    bucket = TokenBucket(
        table=table, name="w", rate=10.0, burst=20.0, slack_s=1.0, clock=t.clock, sleep=t.sleep
    )
    assert bucket.acquire(10, 0.0) == t.now  # capacity 10: all of it at once
    assert bucket.acquire(5, 0.1) is None  # 0.5 s away, not within 0.1 s
    start = t.now
    assert bucket.acquire(5, 1.0) is not None
    assert t.now - start == pytest.approx(0.5, abs=1e-3)
    bucket.block(t.now + 30)
    assert bucket.wait_for(1) == pytest.approx(30.0, abs=1e-3)
    assert bucket.acquire(1, 10.0) is None
    with pytest.raises(ValueError, match="can never fit"):
        bucket.acquire(11, 1.0)


def test_chunks_hold_at_most_a_call_of_operations_and_fit_one_item() -> None:
    from relay.destinations.batch.accept import OperationTooLarge, split

    entries = [{"i": i, "ref": None, "op": op()} for i in range(450)]
    assert [len(c) for c in split(entries, 200, 300_000)] == [200, 200, 50]
    big = [{"i": i, "ref": None, "op": op(attributes={"t": "x" * 100_000})} for i in range(5)]
    assert [len(c) for c in split(big, 200, 300_000)] == [2, 2, 1]
    with pytest.raises(OperationTooLarge, match=r"operations\[1\]"):
        split([entries[0], {"i": 1, "ref": None, "op": op(attributes={"t": "x" * 400_000})}], 200, 300_000)


def test_a_transaction_applied_whose_answer_was_lost_is_not_recorded_twice(table: Table) -> None:
    """The SDK retries a transaction whose answer timed out; the retry's conditions then fail on
    the transaction's own writes. Claims are recognised as ours, outcomes counted once."""
    from relay.core.store import keys
    from relay.destinations.batch import store
    from relay.destinations.batch.store import ChunkResult

    table.put({**keys.execution("e1"), "execution_id": "e1", "operations_total": 2})
    for seq in (0, 1):
        table.put(
            store.chunk_item(
                "e1",
                seq,
                "lane",
                [{"i": seq, "ref": None, "op": op()}],
                now=1.0,
                created_iso="t",
                expires_at=9,
            )
        )
    chunks = [chunk("e1", 0, 1), chunk("e1", 1, 1)]
    assert store.claim(table, "call-1", chunks, 2.0) == chunks
    assert store.claim(table, "call-1", chunks, 2.0) == chunks  # the retried claim: still ours
    assert store.claim(table, "call-2", chunks, 2.0) == []  # another call's: not ours
    results = [ChunkResult(c, "call-1", "sent", delivered=1) for c in chunks]
    store.finish(table, results, 3.0)
    store.finish(table, results, 3.0)  # the retried record
    execution = table.get(keys.execution("e1"))
    assert execution["operations_delivered"] == 2
    assert execution["chunks_sent"] == 2
