"""POST /v1/optimized/triggers and the executions API over the local stack: auth, the 202 answer,
stored chunks, idempotency, bad input (nothing stored), listing, cancelling."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from conftest import (
    CAMPAIGN,
    Api,
    chunk_items,
    profile,
    profiles,
    queue_depth,
    relay_env,
    scan_all,
    schedule,
)
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"].get("details", []), list)
    return body["error"]


def _fields(error: dict[str, Any]) -> set[str]:
    return {d.get("field") for d in error.get("details", [])}


def _stored_nothing(ddb: Any, sqs: Any, stack: LocalStack) -> None:
    # Only records of requests: a dispatcher of an earlier test may still touch its own group.
    assert [i for i in scan_all(ddb) if i["pk"]["S"].startswith(("EXEC#", "IDEMPOTENCY#"))] == []
    assert queue_depth(sqs, stack.resources.url("DispatchQueue")) == 0


# -- auth and public routes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "wrong-key"},
    ],
    ids=["missing", "wrong-key", "basic", "empty-bearer", "no-scheme"],
)
def test_triggers_and_executions_need_the_api_key(
    relay: LocalStack, ddb: Any, sqs: Any, group: str, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=relay.api_url, headers=headers) as anon:
        trigger = anon.post("/v1/optimized/triggers", json={"group_id": group, "profiles": profiles(1)})
        _error(trigger, 401, "unauthorized")
        _error(anon.get("/v1/executions"), 401, "unauthorized")
        _error(anon.get(f"/v1/executions/{uuid.uuid4()}"), 401, "unauthorized")
        _error(anon.delete(f"/v1/executions/{uuid.uuid4()}"), 401, "unauthorized")
    _stored_nothing(ddb, sqs, relay)


def test_health_and_openapi_are_public_and_list_the_routes(relay: LocalStack) -> None:
    with httpx.Client(base_url=relay.api_url) as anon:
        health = anon.get("/v1/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        spec = anon.get("/v1/openapi.json")
    assert spec.status_code == 200
    assert spec.headers["content-type"].startswith("application/json")
    document = spec.json()
    paths = document["paths"]
    assert "post" in paths["/v1/optimized/triggers"]
    assert "get" in paths["/v1/executions"]
    assert {"get", "delete"} <= set(paths["/v1/executions/{execution_id}"])
    assert "bearer" in document["components"]["securitySchemes"]
    post = paths["/v1/optimized/triggers"]["post"]
    assert {"202", "401", "409", "413", "422"} <= set(post["responses"])


def test_the_right_key_is_accepted(api: Api, group: str) -> None:
    assert api.trigger(group, 1).status_code == 202


# -- accepting a trigger ----------------------------------------------------------------------------


def test_trigger_is_accepted_and_chunked_in_input_order(api: Api, ddb: Any, sqs: Any, group: str) -> None:
    people = profiles(120)
    answer = api.trigger(group, people, schedule(3600, calls_per_minute=20)).json()
    assert answer["status"] == "queued"
    assert answer["profiles"] == 120
    assert answer["chunks"] == 3
    assert set(answer) == {
        "execution_id",
        "status",
        "profiles",
        "chunks",
        "estimated_dispatch_done_at",
        "warnings",
    }
    assert answer["warnings"] == []
    assert answer["estimated_dispatch_done_at"].endswith("Z")
    uuid.UUID(answer["execution_id"])

    chunks = chunk_items(ddb, answer["execution_id"])
    assert [c["seq"] for c in chunks] == [0, 1, 2]
    assert [c["profile_count"] for c in chunks] == [50, 50, 20]
    stored = [p for c in chunks for p in json.loads(c["profiles_json"])]
    assert [p["index"] for p in stored] == list(range(120))
    assert [p["person"]["phone_number"] for p in stored] == [p["person"]["phone_number"] for p in people]
    assert [p["ref"] for p in stored] == [p["ref"] for p in people]
    assert all(c["group_id"] == group for c in chunks)
    assert all(c["schedule"]["campaign_uuid"] == CAMPAIGN for c in chunks)
    assert all(c["schedule"]["calls_per_minute"] == 20 for c in chunks)


def test_trigger_without_schedule_and_email_only_profile(api: Api, ddb: Any, group: str) -> None:
    people = [{"person": {"email_address": "someone@example.com"}, "attributes": [{"name": "x", "value": 1}]}]
    answer = api.trigger(group, people).json()
    assert (answer["profiles"], answer["chunks"]) == (1, 1)
    [chunk] = chunk_items(ddb, answer["execution_id"])
    assert chunk.get("schedule") is None
    assert json.loads(chunk["profiles_json"])[0]["person"] == {"email_address": "someone@example.com"}


def test_accepted_execution_shows_queued_then_scheduled_upstream(api: Api, group: str) -> None:
    answer = api.trigger(group, 2, schedule(3600)).json()
    first = api.execution(answer["execution_id"])
    assert first["status"] in ("queued", "dispatching", "scheduled")
    assert first["profiles"]["total"] == 2
    assert first["chunks"]["total"] == 1
    done = api.wait(answer["execution_id"])
    assert done["status"] == "scheduled"  # handed upstream; the campaign starts in an hour
    assert done["estimated_dispatch_done_at"] == answer["estimated_dispatch_done_at"]


# -- idempotency ------------------------------------------------------------------------------------


def test_same_idempotency_key_and_body_gives_the_same_answer_once(
    api: Api, relay: LocalStack, ddb: Any, group: str
) -> None:
    people = profiles(60)
    sched = schedule(3600)
    first = api.trigger(group, people, sched, key="order-1").json()
    again = api.trigger(group, people, sched, key="order-1").json()
    assert again == first
    done = api.wait(first["execution_id"])
    assert done["status"] == "scheduled"
    # One execution with its two chunks; the repeat neither stored nor sent anything more.
    executions = [i for i in scan_all(ddb) if i["sk"]["S"] == "META" and i["pk"]["S"].startswith("EXEC#")]
    assert len(executions) == 1
    assert len(chunk_items(ddb, first["execution_id"])) == 2
    third = api.trigger(group, people, sched, key="order-1").json()
    assert third == first
    assert len(relay.sandbox.received) == 2
    assert sum(len(b.profiles) for b in relay.sandbox.received) == 60


def test_same_idempotency_key_with_another_body_is_409(api: Api, ddb: Any, sqs: Any, group: str) -> None:
    api.trigger(group, profiles(2), key="order-2")
    before = len(scan_all(ddb))
    conflict = api.trigger(group, profiles(3), key="order-2", expect=None)
    _error(conflict, 409, "idempotency_conflict")
    assert len(scan_all(ddb)) == before


def test_different_idempotency_keys_are_different_executions(api: Api, group: str) -> None:
    a = api.trigger(group, profiles(1), key="a").json()
    b = api.trigger(group, profiles(1), key="b").json()
    assert a["execution_id"] != b["execution_id"]


# -- bad input ----------------------------------------------------------------------------------------


def _post_raw(api: Api, content: bytes, content_type: str = "application/json") -> httpx.Response:
    return api.http.post("/v1/optimized/triggers", content=content, headers={"Content-Type": content_type})


def test_invalid_json_is_400(api: Api, ddb: Any, sqs: Any, relay: LocalStack) -> None:
    _error(_post_raw(api, b'{"group_id": '), 400, "invalid_json")
    _stored_nothing(ddb, sqs, relay)


def _bad_trigger_cases(group: str) -> list[tuple[str, dict[str, Any], str]]:
    good = profiles(5)
    no_contact = [*good[:3], {"person": {"first_name": "Nobody"}}, good[4]]
    bad_phone = [*good[:3], {"person": {"phone_number": "040 123 4567"}}, good[4]]
    return [
        ("group not a uuid", {"group_id": "my-group", "profiles": good}, "group_id"),
        ("no contact", {"group_id": group, "profiles": no_contact}, "profiles[3].person"),
        ("bad phone", {"group_id": group, "profiles": bad_phone}, "profiles[3].person.phone_number"),
        ("bad email", {"group_id": group, "profiles": [{"person": {"email_address": "x"}}]}, ""),
        ("empty profiles", {"group_id": group, "profiles": []}, "profiles"),
        ("no profiles", {"group_id": group}, "profiles"),
        (
            "bad campaign",
            {"group_id": group, "profiles": good, "schedule": {"campaign_uuid": "nope"}},
            "schedule.campaign_uuid",
        ),
        (
            "start_at unparsable",
            {
                "group_id": group,
                "profiles": good,
                "schedule": {"campaign_uuid": CAMPAIGN, "start_at": "soon"},
            },
            "schedule.start_at",
        ),
        (
            "start_at past",
            {
                "group_id": group,
                "profiles": good,
                "schedule": {"campaign_uuid": CAMPAIGN, "start_at": "2020-01-01T10:00:00Z"},
            },
            "schedule.start_at",
        ),
        (
            "calls_per_minute 0",
            {"group_id": group, "profiles": good, "schedule": schedule(60, calls_per_minute=0)},
            "schedule.calls_per_minute",
        ),
        (
            "calls_per_minute 61",
            {"group_id": group, "profiles": good, "schedule": schedule(60, calls_per_minute=61)},
            "schedule.calls_per_minute",
        ),
        (
            "unknown timezone",
            {"group_id": group, "profiles": good, "schedule": schedule(None, timezone="Mars/Olympus")},
            "schedule.timezone",
        ),
        ("body is a list", [], ""),  # type: ignore[list-item]
    ]


@pytest.mark.parametrize("case", range(13))
def test_invalid_triggers_are_422_naming_the_field(
    api: Api, ddb: Any, sqs: Any, relay: LocalStack, group: str, case: int
) -> None:
    name, body, field = _bad_trigger_cases(group)[case]
    response = api.http.post("/v1/optimized/triggers", json=body)
    error = _error(response, 422, "validation_failed")
    assert error["details"], name
    if field:
        assert field in _fields(error), (name, error)
        assert field in error["message"], (name, error)
    else:
        assert error["details"][0]["message"]
    _stored_nothing(ddb, sqs, relay)


def test_bad_email_names_the_email_field(api: Api, group: str) -> None:
    response = api.http.post(
        "/v1/optimized/triggers", json={"group_id": group, "profiles": [{"person": {"email_address": "x"}}]}
    )
    assert "profiles[0].person.email_address" in _fields(_error(response, 422, "validation_failed"))


def test_every_invalid_field_is_listed(api: Api, group: str) -> None:
    people = [{"person": {"phone_number": "1"}}, profile(1), {"person": {}}]
    response = api.http.post("/v1/optimized/triggers", json={"group_id": "x", "profiles": people})
    error = _error(response, 422, "validation_failed")
    assert {"group_id", "profiles[0].person.phone_number", "profiles[2].person"} <= _fields(error)
    assert "more)" in error["message"]


def test_body_over_the_limit_is_413(api: Api, ddb: Any, sqs: Any, relay: LocalStack, group: str) -> None:
    big = {"group_id": group, "profiles": profiles(10), "padding": "x" * 200_001}
    _error(api.http.post("/v1/optimized/triggers", json=big), 413, "payload_too_large")
    with relay_env(RELAY_MAX_BODY_BYTES="2048"):
        _error(
            api.http.post("/v1/optimized/triggers", json={"group_id": group, "profiles": profiles(40)}),
            413,
            "payload_too_large",
        )
        assert api.trigger(group, 1).status_code == 202  # a small one still goes through
    _error(_post_raw(api, b"{" * 200_001), 413, "payload_too_large")


def test_rejected_requests_store_nothing(api: Api, ddb: Any, sqs: Any, relay: LocalStack, group: str) -> None:
    for _ in range(3):
        api.http.post("/v1/optimized/triggers", json={"group_id": group, "profiles": []})
        api.http.post(
            "/v1/optimized/triggers", content=b"not json", headers={"Content-Type": "application/json"}
        )
    _stored_nothing(ddb, sqs, relay)
    assert relay.sandbox.received == []


# -- executions API -----------------------------------------------------------------------------------


def test_unknown_execution_is_404(api: Api) -> None:
    _error(api.http.get(f"/v1/executions/{uuid.uuid4()}"), 404, "not_found")
    _error(api.http.delete(f"/v1/executions/{uuid.uuid4()}"), 404, "not_found")


def test_executions_are_listed_newest_first_with_pagination(api: Api, group: str) -> None:
    ids = []
    for _ in range(5):
        ids.append(api.trigger(group, 1, schedule(3600)).json()["execution_id"])
        time.sleep(0.002)  # distinct created_at milliseconds: the order is by creation time
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if token:
            params["next_token"] = token
        page = api.http.get("/v1/executions", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += [item["execution_id"] for item in body["items"]]
        pages += 1
        token = body.get("next_token")
        if not token:
            break
    assert seen == list(reversed(ids))
    assert pages >= 3
    listed = api.http.get("/v1/executions").json()["items"][0]
    assert listed.get("chunk_details") is None
    _error(api.http.get("/v1/executions", params={"next_token": "%%%"}), 400, "invalid_token")
    _error(api.http.get("/v1/executions", params={"limit": 0}), 422, "validation_failed")
    _error(api.http.get("/v1/executions", params={"status": "bogus"}), 422, "validation_failed")


def test_executions_status_filter(api: Api, relay: LocalStack, group: str) -> None:
    relay.sandbox.fail_next(422, body={"message": "The given data was invalid."})
    failed = api.trigger(group, 1, schedule(3600)).json()["execution_id"]
    assert api.wait(failed)["status"] == "failed"
    done = api.trigger(group, 1, schedule(3600)).json()["execution_id"]
    assert api.wait(done)["status"] == "scheduled"

    def listed(status: str) -> list[str]:
        page = api.http.get("/v1/executions", params={"status": status})
        assert page.status_code == 200, page.text
        assert all(item["status"] == status for item in page.json()["items"])
        return [item["execution_id"] for item in page.json()["items"]]

    assert listed("scheduled") == [done]
    assert listed("failed") == [failed]
    assert listed("queued") == []


def test_delete_cancels_pending_chunks(api: Api, relay: LocalStack, ddb: Any, group: str) -> None:
    # 12 chunks at 3 per 2 s: most are still pending when the cancel lands.
    answer = api.trigger(group, 600, schedule(3600)).json()
    assert answer["chunks"] == 12
    cancel = api.http.delete(f"/v1/executions/{answer['execution_id']}")
    assert cancel.status_code == 200, cancel.text
    view = cancel.json()
    assert view["chunks"]["cancelled"] >= 6
    assert view["chunks"]["pending"] == 0 or view["chunks"]["cancelled"] + view["chunks"]["sent"] <= 12
    final = api.wait(answer["execution_id"], lambda e: e["chunks"]["pending"] == 0)
    counts = final["chunks"]
    assert counts["cancelled"] + counts["sent"] == 12
    assert final["profiles"]["cancelled"] == 50 * counts["cancelled"]
    assert final["status"] in ("cancelled", "scheduled")
    statuses = {c["status"] for c in chunk_items(ddb, answer["execution_id"])}
    assert statuses <= {"sent", "cancelled"}
    # Nothing cancelled reaches the upstream, however long we wait for the group to go idle.
    sent_profiles = sum(len(b.profiles) for b in relay.sandbox.received if b.status == 201)
    assert sent_profiles == 50 * counts["sent"]
    again = api.http.delete(f"/v1/executions/{answer['execution_id']}")
    _error(again, 409, "not_cancellable")
