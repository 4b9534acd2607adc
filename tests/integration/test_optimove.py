"""Optimove API-triggered campaigns end to end: API -> SQS -> dispatch -> sandbox Optimove ->
poll -> terminal status, with schemas, de-duplication and scheduling (issue 5, points 1-7).

The shared compressed stack (tests/conftest.py); Optimove timings compressed through settings and
the sandbox's own knobs; every wait is a poll with a deadline."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Api, relay_env
from relay_local.stack import LocalStack

pytestmark = pytest.mark.integration

TERMINAL = {"published", "failed", "unknown", "dead_lettered", "cancelled"}
FAST = {
    "OPTIMOVE_POLL_FIRST_DELAY_S": "1",
    "OPTIMOVE_POLL_BACKOFF": "1",
    "OPTIMOVE_RETRY_BASE_S": "1",
    "OPTIMOVE_RETRY_MAX_S": "1",
    "OPTIMOVE_SCHEMA_CACHE_S": "0",
}


@pytest.fixture
def ov(relay: LocalStack) -> Iterator[Any]:
    sandbox = relay.sandbox_optimove
    assert sandbox is not None, "the local stack starts a sandbox Optimove without OPTIMOVE_API_URL"
    sandbox.reset()
    sandbox.queued_s, sandbox.processing_s, sandbox.rps = 0.5, 0.5, 500
    sandbox.failing_generators.clear()
    with relay_env(**FAST):
        yield sandbox
    sandbox.reset()


def gen() -> str:
    return str(uuid.uuid4())


def trigger(api: Api, generator: str | None = None, *, expect: int | None = 202, headers=None, **extra):
    body = {"event_generator_id": generator or gen(), "topic_key": "topic-1", "context": {"match_id": "m1"}}
    body.update(extra)
    response = api.http.post("/v1/optimove/triggers", json=body, headers=headers or {})
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


def wait(api: Api, execution_id: str, until: Callable[[dict], bool], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = api.execution(execution_id)
        if until(view) or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


def terminal(view: dict) -> bool:
    return view["status"] in TERMINAL


def in_future(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


# -- 1. trigger -> run with the keys, 202 {execution_id, status} --------------------------------------


def test_trigger_runs_the_generator_and_reaches_published(api: Api, ov: Any) -> None:
    generator = gen()
    answer = trigger(api, generator).json()
    assert answer["status"] == "queued"
    assert answer["execution_id"]
    assert answer["duplicate"] is False
    view = wait(api, answer["execution_id"], terminal)
    assert view["status"] == "published", view
    assert view["destination"] == "optimove"
    details = view["optimove"]
    assert details["audience_size"]
    assert details["audience_size"] >= 1000
    assert details["optimove_execution_id"].startswith("exec-")
    statuses = [t["status"] for t in view["transitions"]]
    assert statuses[0] == "queued"
    assert "sending" in statuses
    assert "accepted" in statuses
    assert statuses[-1] == "published"
    assert all(t["at"] for t in view["transitions"])
    runs = ov.accepted_runs()
    assert len(runs) == 1
    assert runs[0].generator_id == generator
    assert runs[0].context == {"match_id": "m1"}


def test_idempotency_key_and_auth_as_for_optimized(api: Api, ov: Any) -> None:
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    generator = gen()
    first = trigger(api, generator, headers=key).json()
    again = trigger(api, generator, headers=key).json()
    assert again["execution_id"] == first["execution_id"]
    conflict = trigger(api, generator, headers=key, expect=409, topic_key="other").json()
    assert conflict["error"]["code"] == "idempotency_conflict"
    wait(api, first["execution_id"], terminal)
    assert len(ov.accepted_runs()) == 1
    anonymous = api.http.post("/v1/optimove/triggers", json={}, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    bad = api.http.post("/v1/optimove/triggers", json={"topic_key": "t", "context": {}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "event_generator_id"


# -- 2. upstream answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_fail_the_execution_without_retry(api: Api, ov: Any, status: int) -> None:
    ov.fail_next(status)
    answer = trigger(api).json()
    view = wait(api, answer["execution_id"], terminal)
    assert view["status"] == "failed"
    assert view["optimove"]["upstream_http_status"] == status
    assert view["optimove"]["error_code"] == f"http_{status}"
    assert view["optimove"]["error_message"].startswith(f"HTTP {status}")
    assert len(ov.runs) == 1  # not retried


def test_429_honours_retry_after_and_is_never_lost(api: Api, ov: Any) -> None:
    ov.fail_next(429, headers={"Retry-After": "1"})
    answer = trigger(api).json()
    view = wait(api, answer["execution_id"], terminal)
    assert view["status"] == "published", view
    statuses = [r.status for r in ov.runs]
    assert statuses == [429, 202]
    assert ov.runs[1].arrived_at - ov.runs[0].arrived_at >= 0.9
    assert any("429" in (t.get("note") or "") for t in view["transitions"])


def test_500_is_retried_with_backoff_then_dead_lettered(
    api: Api, ov: Any, sqs: Any, relay: LocalStack
) -> None:
    with relay_env(OPTIMOVE_MAX_ATTEMPTS="3"):
        first, second = gen(), gen()
        ov.fail_next(500, count=1, generator_id=first)
        recovered = trigger(api, first).json()
        assert wait(api, recovered["execution_id"], terminal)["status"] == "published"
        ov.fail_next(500, count=3, generator_id=second)
        answer = trigger(api, second).json()
        view = wait(api, answer["execution_id"], terminal)
    assert view["status"] == "dead_lettered", view
    assert view["optimove"]["attempts"] == 3
    assert view["optimove"]["error_code"] == "http_500"
    assert [r.status for r in ov.runs if r.generator_id == first] == [500, 202]
    assert [r.status for r in ov.runs if r.generator_id == second] == [500, 500, 500]
    dlq = relay.resources["OptimoveDeadLetterQueue"].url
    messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
        "Messages", []
    )
    assert [json.loads(m["Body"])["execution_id"] for m in messages] == [answer["execution_id"]]

    # An operator re-drives it once Optimove is back: the run goes back to queued and is sent.
    from relay_ops import dlq as relay_dlq

    assert relay_dlq.main(["redrive", "--queue", "optimove"]) == 0
    view = wait(api, answer["execution_id"], lambda v: v["status"] == "published")
    assert [r.status for r in ov.runs if r.generator_id == second] == [500, 500, 500, 202]
    assert any("re-driven" in (t.get("note") or "") for t in view["transitions"])


def test_a_burst_is_spread_within_the_brand_limit(api: Api, ov: Any) -> None:
    ov.rps = 10  # the sandbox would answer 429 above this
    with relay_env(OPTIMOVE_BRAND_RPS="10", OPTIMOVE_POLL_FIRST_DELAY_S="30"):
        ids = [trigger(api, f"g-{i % 2}", context={"n": i}).json()["execution_id"] for i in range(40)]
        deadline = time.monotonic() + 60
        while len(ov.accepted_runs()) < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert len(ov.accepted_runs()) == 40
    assert ov.rate_limited == 0
    assert ov.max_in_any_window(1.0) <= 10
    assert len({r.execution_id for r in ov.accepted_runs()}) == 40
    assert len(set(ids)) == 40


# -- 3. polling ----------------------------------------------------------------------------------------


def test_failed_execution_stores_error_code_and_message(api: Api, ov: Any) -> None:
    generator = gen()
    ov.failing_generators.add(generator)
    ov.queued_s, ov.processing_s = 0.2, 3600  # `processing` until a poll has seen it
    execution_id = trigger(api, generator).json()["execution_id"]
    api.wait(execution_id, lambda v: v["status"] == "processing", timeout=30)
    ov.processing_s = 0  # then its audience resolution fails
    view = wait(api, execution_id, terminal)
    assert view["status"] == "failed"
    assert view["optimove"]["error_code"] == "AUDIENCE_RESOLUTION_FAILED"
    assert "Preference Centre" in view["optimove"]["error_message"]
    assert "processing" in [t["status"] for t in view["transitions"]]


def test_no_terminal_status_within_poll_max_becomes_unknown(api: Api, ov: Any) -> None:
    ov.processing_s = 3600
    with relay_env(OPTIMOVE_POLL_MAX_S="2"):
        view = wait(api, trigger(api).json()["execution_id"], terminal)
    assert view["status"] == "unknown"
    assert view["optimove"]["error_code"] == "poll_timeout"
    assert ov.status_reads >= 1


# -- 4. context schemas --------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "required": ["match_id", "minute"],
    "properties": {"match_id": {"type": "string"}, "minute": {"type": "integer"}, "url": {"type": "string"}},
}


def test_schema_api_and_context_checks(api: Api, ov: Any) -> None:
    generator = gen()
    assert api.http.get(f"/v1/optimove/generators/{generator}/schema").status_code == 404
    put = api.http.put(f"/v1/optimove/generators/{generator}/schema", json={"schema": SCHEMA})
    assert put.status_code == 200, put.text
    got = api.http.get(f"/v1/optimove/generators/{generator}/schema").json()
    assert got["schema"] == SCHEMA
    assert got["source"] == "api"

    cases = {
        "context.minute": {"match_id": "m1"},  # missing required
        "context.match_id": {"match_id": 5, "minute": 3},  # wrong type
        "context.mtach_id": {"match_id": "m1", "minute": 3, "mtach_id": "typo"},  # unknown field
    }
    for field, context in cases.items():
        answer = trigger(api, generator, expect=422, context=context).json()["error"]
        assert answer["code"] == "context_invalid"
        assert field in answer["message"]
        assert answer["details"][0]["field"] == field
    assert ov.runs == []  # nothing sent
    ok = trigger(api, generator, context={"match_id": "m1", "minute": 3}).json()
    assert wait(api, ok["execution_id"], terminal)["status"] == "published"
    invalid = api.http.put(f"/v1/optimove/generators/{generator}/schema", json={"schema": {"type": 5}})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["code"] == "schema_invalid"


def test_no_schema_accepted_unless_required_and_file_registry(api: Api, ov: Any, tmp_path: Any) -> None:
    trigger(api, gen(), context={"anything": 1})
    with relay_env(OPTIMOVE_REQUIRE_SCHEMA="true"):
        answer = trigger(api, gen(), expect=422).json()["error"]
        assert answer["code"] == "schema_required"
    path = tmp_path / "schemas.yaml"
    path.write_text(
        "generators:\n  gen-from-file:\n    type: object\n    properties:\n      venue: {type: string}\n"
    )
    with relay_env(OPTIMOVE_SCHEMAS=str(path)):
        got = api.http.get("/v1/optimove/generators/gen-from-file/schema").json()
        assert got["source"] == "file"
        err = trigger(api, "gen-from-file", expect=422, context={"veneu": "x"}).json()["error"]
        assert err["details"][0]["field"] == "context.veneu"
        trigger(api, "gen-from-file", context={"venue": "x"})


# -- 5. de-duplication -----------------------------------------------------------------------------------


def test_dedupe_key_and_content_window(api: Api, ov: Any) -> None:
    generator = gen()
    first = trigger(api, generator, dedupe_key="goal-42").json()
    second = trigger(api, generator, dedupe_key="goal-42", context={"other": True}).json()
    assert second["duplicate"] is True
    assert second["execution_id"] == first["execution_id"]
    wait(api, first["execution_id"], terminal)
    with relay_env(OPTIMOVE_DEDUPE_WINDOW_S="60"):
        a = trigger(api, generator, context={"x": 1}).json()
        b = trigger(api, generator, context={"x": 1}).json()
        c = trigger(api, generator, context={"x": 2}).json()
    assert b["duplicate"]
    assert b["execution_id"] == a["execution_id"]
    assert not c["duplicate"]
    assert c["execution_id"] != a["execution_id"]
    for e in (a, c):
        wait(api, e["execution_id"], terminal)
    assert len(ov.accepted_runs()) == 3


# -- 6. scheduling ---------------------------------------------------------------------------------------


def test_scheduled_trigger_fires_on_time_and_cancelled_one_never(
    api: Api, ov: Any, relay: LocalStack
) -> None:
    # Far enough ahead that both triggers are accepted as scheduled (more than 1 s before it)
    # even when a cold instance on a loaded machine takes seconds to answer.
    send_at = time.time() + 8
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(send_at)) + f".{int(send_at % 1 * 1000):03d}Z"
    kept = trigger(api, "gen-kept", send_at=stamp).json()
    dropped = trigger(api, "gen-dropped", send_at=stamp).json()
    assert kept["status"] == dropped["status"] == "scheduled"
    listed = api.http.get("/v1/schedules", params={"from": in_future(-60), "to": in_future(3600)}).json()
    assert {kept["execution_id"], dropped["execution_id"]} <= {i["execution_id"] for i in listed["items"]}
    cancelled = api.http.delete(f"/v1/executions/{dropped['execution_id']}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    relay.schedules.run_once()  # as EventBridge would (the stack also runs it every few seconds)
    view = wait(api, kept["execution_id"], terminal)
    assert view["status"] == "published"
    run = ov.accepted_runs()
    assert [r.generator_id for r in run] == ["gen-kept"]
    assert send_at - 0.05 <= run[0].arrived_at <= send_at + 65
    late = api.http.delete(f"/v1/executions/{kept['execution_id']}")
    assert late.status_code == 409


def test_local_time_with_zone_and_dst_errors(api: Api, ov: Any) -> None:
    ok = trigger(api, send_at="2031-06-01T09:00:00", timezone="Europe/Helsinki").json()
    assert ok["send_at"] == "2031-06-01T06:00:00.000Z"
    gap = trigger(api, expect=422, send_at="2031-03-30T03:30:00", timezone="Europe/Helsinki").json()
    assert "does not exist" in gap["error"]["message"]
    assert "send_at" in gap["error"]["message"]
    fold = trigger(api, expect=422, send_at="2031-10-26T03:30:00", timezone="Europe/Helsinki").json()
    assert "ambiguous" in fold["error"]["message"]
    explicit = trigger(api, send_at="2031-10-26T03:30:00+03:00", timezone="Europe/Helsinki").json()
    assert explicit["send_at"] == "2031-10-26T00:30:00.000Z"


def test_schedules_list_every_destination(api: Api, ov: Any, group: str) -> None:
    optimized = api.trigger(
        group, 1, {"campaign_uuid": str(uuid.uuid4()), "start_at": in_future(7200)}
    ).json()
    optimove = trigger(api, send_at=in_future(3600)).json()
    items = api.http.get("/v1/schedules", params={"from": in_future(0), "to": in_future(3 * 3600)}).json()[
        "items"
    ]
    by_id = {i["execution_id"]: i for i in items}
    assert by_id[optimove["execution_id"]]["destination"] == "optimove"
    assert by_id[optimized["execution_id"]]["destination"] == "optimized"
    assert [i["execution_id"] for i in items] == [optimove["execution_id"], optimized["execution_id"]]
    narrow = api.http.get("/v1/schedules", params={"from": in_future(0), "to": in_future(5400)}).json()[
        "items"
    ]
    assert [i["execution_id"] for i in narrow] == [optimove["execution_id"]]


def test_one_idempotency_key_on_two_trigger_routes_is_two_requests(api: Api, group: str) -> None:
    """Idempotency-Keys are scoped per route: the same key on the Optimized.app and the Optimove
    trigger route names two requests (it answered 409 on the second before)."""
    key, generator = str(uuid.uuid4()), gen()
    optimized = api.trigger(group, 1, key=key).json()
    optimove = trigger(api, generator, headers={"Idempotency-Key": key}).json()
    assert optimized["execution_id"] != optimove["execution_id"]
    again = trigger(api, generator, headers={"Idempotency-Key": key}).json()
    assert again["execution_id"] == optimove["execution_id"]
