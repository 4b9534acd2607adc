"""Batch.com audiences end to end: API -> DynamoDB + SQS -> batch worker -> sandbox Batch over
loopback -> indexing polls -> `applied` (issue 11, point 4, and the audience half of point 6).

The shared compressed stack; audience timings compressed through settings (calls of 4 ids, polls
every second) and the sandbox's knobs (indexing in 1 s, at most 4 ids a call). Batch's 1 request/s
per project key is NOT compressed: the sandbox enforces it and the tests check it held."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import Api, crash_at, relay_env, scan_all
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PER_CALL = 4
FAST = {
    "BATCH_INDEXING_POLL_FIRST_S": "1",
    "BATCH_INDEXING_POLL_MAX_S": "1",
    "BATCH_AUDIENCE_IDS_PER_CALL": str(PER_CALL),
}
DONE = {"applied", "removed", "unconfirmed", "failed", "ambiguous"}


@pytest.fixture
def bt(relay: LocalStack) -> Iterator[Any]:
    sandbox = relay.sandbox_batch
    assert sandbox is not None, "the local stack starts a sandbox Batch without BATCH_API_URL"
    sandbox.reset()
    sandbox.audiences.indexing_s = 1.0
    sandbox.audiences.max_ids = PER_CALL  # the relay never sends more ids in a call than allowed
    with relay_env(**FAST):
        yield sandbox
    sandbox.reset()


def name() -> str:
    return f"aud_{uuid.uuid4().hex[:10]}"


def write(
    api: Api, method: str, path: str, body: Any = None, *, expect: int | None = 202, **kw: Any
) -> httpx.Response:
    response = api.http.request(method, path, json=body, **kw)
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


def create(api: Api, audience: str, **kw: Any) -> dict[str, Any]:
    return write(
        api, "POST", "/v1/batch/audiences", {"name": audience, "display_name": f"{audience}!"}, **kw
    ).json()


def update(api: Api, audience: str, ids: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return write(api, "POST", f"/v1/batch/audiences/{audience}/ids", {"ids": ids}, **kw).json()


def replace(api: Api, audience: str, ids: list[str], **kw: Any) -> dict[str, Any]:
    return write(
        api, "PUT", f"/v1/batch/audiences/{audience}/ids", {"ids": [{"id": i} for i in ids]}, **kw
    ).json()


def done(view: dict[str, Any]) -> bool:
    return view["status"] in DONE


def wait_all(api: Api, *answers: dict[str, Any], timeout: float = 60) -> list[dict[str, Any]]:
    return [api.wait(a["execution_id"], done, timeout=timeout) for a in answers]


def audience_writes(bt: Any, audience: str) -> list[tuple[str, int]]:
    """(path, ids) of every write the sandbox accepted for the audience, in arrival order."""
    return [(c.path, len(c.ids)) for c in bt.audiences.writes(audience)]


def max_in_any_second(bt: Any) -> int:
    times = sorted(c.arrived_at for c in bt.calls if c.path.startswith("/audiences/"))
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- create -> add -> replace -> APPLIED, in order, 4 ids a call --------------------------------------


def test_create_add_replace_reach_applied_in_order(api: Api, bt: Any) -> None:
    t0 = time.time()
    audience = name()
    adds = [{"action": "add", "id": f"u{i}", "attributes": {"n": i}} for i in range(10)]
    adds.append({"action": "remove", "id": "u3"})  # the last action per id wins, across calls too
    created = create(api, audience)
    added = update(api, audience, adds)
    replaced = replace(api, audience, [f"v{i}" for i in range(6)])
    assert (created["sequence"], added["sequence"], replaced["sequence"]) == (1, 2, 3)
    assert (added["ids"], added["calls"], added["status"], added["operation"]) == (11, 3, "queued", "update")
    views = wait_all(api, created, added, replaced)
    assert [v["status"] for v in views] == ["applied"] * 3, views
    assert audience_writes(bt, audience) == [
        ("/audiences/create", 0),
        ("/audiences/update", 4),
        ("/audiences/update", 4),
        ("/audiences/update", 3),
        ("/audiences/replace", 4),
        ("/audiences/update", 2),
    ]
    assert sorted(bt.audiences.members(audience)) == [f"v{i}" for i in range(6)]
    details = views[1]["audience"]
    assert details["name"] == audience
    assert (details["calls_total"], details["calls_made"], details["ids"]) == (3, 3, 11)
    tokens = {c.indexing_token for c in bt.audiences.writes(audience)}
    assert {c["indexing_token"] for c in details["calls"]} <= tokens
    assert all(c["indexing_state"] == "APPLIED" and c["indexed_at"] for c in details["calls"])
    assert details["ready_at"] >= max(c["sent_at"] for c in details["calls"])
    statuses = [t["status"] for t in views[1]["transitions"]]
    assert statuses[0] == "queued"
    assert statuses[-2:] == ["indexing", "applied"]
    assert max_in_any_second(bt) <= 1, [(c.path, round(c.arrived_at - t0, 3), c.status) for c in bt.calls]
    assert bt.rate_limited == 0


def test_the_add_before_an_update_keeps_its_last_action_per_id(api: Api, bt: Any) -> None:
    audience = name()
    create(api, audience)
    ids = [{"action": "add", "id": "x"}, {"action": "add", "id": "y"}, {"action": "remove", "id": "x"}]
    ids += [{"action": "add", "id": f"z{i}"} for i in range(3)] + [{"action": "add", "id": "x"}]
    answer = update(api, audience, ids)
    assert api.wait(answer["execution_id"], done, timeout=60)["status"] == "applied"
    assert sorted(bt.audiences.members(audience)) == ["x", "y", "z0", "z1", "z2"]


# -- order kept when the queue delivers out of order --------------------------------------------------


def test_order_is_kept_when_messages_arrive_out_of_order(
    api: Api, bt: Any, relay: LocalStack, sqs: Any, ddb: Any
) -> None:
    """Three writes accepted with their messages lost (the accept crashed after storing each), then
    their messages delivered newest first: the replace and the add wait for the create; each write
    releases the next, so Batch sees create, add, replace."""
    from relay.core.store import codec

    audience = name()
    with crash_at("batch.audience.accept.after_store"):
        assert create(api, audience, expect=500)
        assert update(api, audience, [{"action": "add", "id": "old"}], expect=500)
        assert replace(api, audience, ["new"], expect=500)
    items = [
        codec.load(i)
        for i in scan_all(ddb)
        if i.get("audience", {}).get("S") == audience and i["sk"]["S"] == "META"
    ]
    by_seq = sorted(items, key=lambda i: i["seq"])
    assert [i["operation"] for i in by_seq] == ["create", "update", "replace"]
    url = relay.resources["BatchQueue"].url
    for item in reversed(by_seq):
        message = {"destination": "batch", "kind": "audience_write", "execution_id": item["execution_id"]}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(message))
    views = wait_all(api, *by_seq)
    assert [v["status"] for v in views] == ["applied"] * 3, views
    assert [p for p, _ in audience_writes(bt, audience)] == [
        "/audiences/create",
        "/audiences/update",
        "/audiences/replace",
    ]
    assert list(bt.audiences.members(audience)) == ["new"]


# -- Batch's limits and answers ----------------------------------------------------------------------


def test_one_request_a_second_across_audiences_and_polls(api: Api, bt: Any) -> None:
    audiences = [name() for _ in range(3)]
    answers = []
    for audience in audiences:
        answers.append(create(api, audience))
        answers.append(update(api, audience, [{"action": "add", "id": f"u{i}"} for i in range(6)]))
    views = wait_all(api, *answers, timeout=90)
    assert [v["status"] for v in views] == ["applied"] * 6, views
    audience_calls = [c for c in bt.calls if c.path.startswith("/audiences/")]
    assert len([c for c in audience_calls if c.path != "/audiences/view"]) == 9
    assert max_in_any_second(bt) == 1
    assert bt.rate_limited == 0


def test_a_429_without_retry_after_is_retried(api: Api, bt: Any) -> None:
    audience = name()
    create(api, audience)
    bt.fail_next(429, path="/audiences/update")
    answer = update(api, audience, [{"action": "add", "id": "u1"}])
    view = api.wait(answer["execution_id"], done, timeout=60)
    assert view["status"] == "applied", view
    assert view["audience"]["rate_limited"] == 1
    update_calls = [c.status for c in bt.calls if c.path == "/audiences/update"]
    assert update_calls == [429, 202]
    assert any("429" in (t.get("note") or "") for t in view["transitions"])


def test_5xx_is_retried_and_400_fails_with_batchs_error(api: Api, bt: Any) -> None:
    audience = name()
    create(api, audience)
    bt.fail_next(500, path="/audiences/update")
    retried = update(api, audience, [{"action": "add", "id": "u1"}])
    ok = api.wait(retried["execution_id"], done, timeout=60)
    assert ok["status"] == "applied", ok
    assert ok["audience"]["attempts"] == 1
    missing = update(api, name(), [{"action": "add", "id": "u1"}])  # no such audience on Batch
    failed = api.wait(missing["execution_id"], done, timeout=60)
    assert failed["status"] == "failed", failed
    assert failed["audience"]["error_code"] == "AUDIENCE_NOT_FOUND"
    assert failed["audience"]["upstream_http_status"] == 404
    assert "no audience" in failed["audience"]["error_message"]
    assert [c.status for c in bt.calls if c.path == "/audiences/update"] == [500, 202, 404]


def test_a_timeout_after_sending_is_ambiguous_and_the_next_write_still_goes(api: Api, bt: Any) -> None:
    audience = name()
    create(api, audience)
    bt.hang_next(3, path="/audiences/update")
    with relay_env(BATCH_READ_TIMEOUT_S="1"):
        hung = update(api, audience, [{"action": "add", "id": "u1"}])
        after = replace(api, audience, ["v1"])
        hung_view, after_view = wait_all(api, hung, after)
    assert hung_view["status"] == "ambiguous", hung_view
    assert hung_view["audience"]["error_code"] == "ambiguous"
    assert after_view["status"] == "applied", after_view


def test_indexing_that_never_ends_is_given_up_visibly(api: Api, bt: Any) -> None:
    bt.audiences.indexing_s = 3600
    with relay_env(BATCH_INDEXING_GIVE_UP_S="2"):
        answer = create(api, name())
        view = api.wait(answer["execution_id"], done, timeout=60)
    assert view["status"] == "unconfirmed", view
    assert view["audience"]["error_code"] == "indexing_timeout"
    assert view["audience"]["calls"][0]["indexing_state"] == "IN_PROGRESS"


def test_in_process_is_read_as_in_progress_and_remove_ends_removed(api: Api, bt: Any) -> None:
    bt.audiences.in_progress_spelling = "IN_PROCESS"
    bt.audiences.indexing_s = 1.5
    audience = name()
    created = create(api, audience)
    removed = write(api, "DELETE", f"/v1/batch/audiences/{audience}").json()
    created_view, removed_view = wait_all(api, created, removed)
    # The remove went once the create's call was made; the create's token then reads 404 (the
    # audience is gone by a later write): nothing left to wait for.
    assert created_view["status"] == "applied", created_view
    assert created_view["audience"]["calls"][0]["indexing_state"] in ("APPLIED", "SUPERSEDED")
    assert removed_view["status"] == "removed"
    assert removed_view["audience"]["operation"] == "remove"
    assert audience not in bt.audiences.audiences


# -- the API's contract ------------------------------------------------------------------------------


def test_list_pages_with_next_token(api: Api, bt: Any) -> None:
    audiences = sorted(name() for _ in range(3))
    wait_all(api, *[create(api, a) for a in audiences])
    first = api.http.get("/v1/batch/audiences", params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [a["name"] for a in page["items"]] == audiences[:2]
    assert page["items"][0]["type"] == "custom_ids"
    assert page["items"][0]["nb_ids"] == 0
    assert page["next_token"]
    second = api.http.get("/v1/batch/audiences", params={"limit": 2, "next_token": page["next_token"]})
    assert second.status_code == 200, second.text
    assert [a["name"] for a in second.json()["items"]] == audiences[2:]
    assert second.json()["next_token"] is None
    bad = api.http.get("/v1/batch/audiences", params={"next_token": "bm9wZQ"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_token"
    assert bt.rate_limited == 0


def test_bad_input_is_refused_with_the_field_named_and_changes_nothing(api: Api, bt: Any) -> None:
    cases = [
        ("POST", "/v1/batch/audiences", {"name": "no spaces"}, "name"),
        ("POST", "/v1/batch/audiences", {"name": "a", "type": "x"}, "type"),
        ("POST", "/v1/batch/audiences/a1/ids", {"ids": []}, "ids"),
        (
            "POST",
            "/v1/batch/audiences/a1/ids",
            {"ids": [{"action": "add"}, {"action": "zap", "id": "x"}]},
            "ids[0].id",
        ),
        ("PUT", "/v1/batch/audiences/a1/ids", {"ids": [{"id": "x" * 513}]}, "ids[0].id"),
        ("POST", "/v1/batch/audiences/bad%20name/ids", {"ids": [{"action": "add", "id": "x"}]}, "name"),
    ]
    for method, path, body, field in cases:
        response = write(api, method, path, body, expect=422)
        error = response.json()["error"]
        assert error["code"] == "validation_failed", (path, error)
        assert error["details"][0]["field"] == field, (path, error)
    assert (
        write(api, "DELETE", "/v1/batch/audiences/bad%20name", expect=422).json()["error"]["code"]
        == "validation_failed"
    )
    assert write(api, "POST", "/v1/batch/audiences", {"name": "x"}, expect=401, headers={"Authorization": ""})
    assert bt.calls == []


def test_an_idempotency_key_answers_the_first_write_again(api: Api, bt: Any) -> None:
    audience = name()
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = create(api, audience, headers=key)
    again = create(api, audience, headers=key)
    assert again == first
    conflict = write(api, "POST", "/v1/batch/audiences", {"name": name()}, expect=409, headers=key)
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert api.wait(first["execution_id"], done, timeout=60)["status"] == "applied"
    assert audience_writes(bt, audience) == [("/audiences/create", 0)]
    assert api.http.delete(f"/v1/executions/{first['execution_id']}").status_code == 409


def test_a_replace_of_25000_ids_goes_in_calls_of_10000(api: Api, bt: Any) -> None:
    """At the documented size: the first call replaces, the two after it add, none over 10,000."""
    bt.audiences.max_ids = 10_000
    audience = name()
    with relay_env(BATCH_AUDIENCE_IDS_PER_CALL="10000", RELAY_MAX_BODY_BYTES="5000000"):
        create(api, audience)
        answer = replace(api, audience, [f"customer-{i:06d}" for i in range(25_000)])
        assert (answer["ids"], answer["calls"]) == (25_000, 3)
        view = api.wait(answer["execution_id"], done, timeout=90)
    assert view["status"] == "applied", view
    assert audience_writes(bt, audience) == [
        ("/audiences/create", 0),
        ("/audiences/replace", 10_000),
        ("/audiences/update", 10_000),
        ("/audiences/update", 5_000),
    ]
    assert len(bt.audiences.members(audience)) == 25_000
    assert [c["ids"] for c in view["audience"]["calls"]] == [10_000, 10_000, 5_000]
