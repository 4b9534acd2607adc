"""Answers that say what happened: a body read as JSON whatever its Content-Type, 422s as
sentences, an unknown field refused on every route, unknown routes and methods in the error
shape (the template's catch-all route, routed the same way by the local gateway), every status
of every destination accepted by the listing filter."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from conftest import CAMPAIGN, Api, profile
from relay import destinations  # noqa: F401 - fills the registry
from relay.executions import registry
from relay_local.stack import LocalStack

pytestmark = pytest.mark.integration

SCHEMA = {"type": "object", "required": ["match_id"], "properties": {"match_id": {"type": "string"}}}


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


def _executions(api: Api) -> int:
    return len(api.http.get("/v1/executions", params={"limit": 100}).json()["items"])


# -- Content-Type ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", None, "text/plain", "application/json; charset=utf-8"],
)
def test_a_schema_put_is_read_as_json_whatever_its_content_type(
    api: Api, relay: LocalStack, content_type: str | None
) -> None:
    """As `curl -d` sends it (form-encoded), or with no Content-Type at all: stored, never
    `schema: Field required` with the whole body as the name of an extra field."""
    generator = f"gen-{uuid.uuid4()}"
    headers = {"Content-Type": content_type} if content_type else {}
    put = api.http.put(
        f"/v1/optimove/generators/{generator}/schema",
        content=json.dumps({"schema": SCHEMA}).encode(),
        headers=headers,
    )
    assert put.status_code == 200, put.text
    stored = api.http.get(f"/v1/optimove/generators/{generator}/schema")
    assert stored.status_code == 200, stored.text
    assert stored.json()["schema"] == SCHEMA


def test_a_form_encoded_trigger_is_read_as_json(api: Api, relay: LocalStack, group: str) -> None:
    body = {"group_id": group, "profiles": [profile(1)]}
    answer = api.http.post(
        "/v1/optimized/triggers",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 202, answer.text


# -- 422s as sentences ------------------------------------------------------------------------------


def test_a_422_reads_as_a_sentence_without_regexes_or_pydantic_prefixes(api: Api, relay: LocalStack) -> None:
    answer = api.http.post(
        "/v1/optimized/triggers",
        json={
            "group_id": "my-group",
            "profiles": [{"person": {"first_name": "No contact"}}],
            "schedule": {"campaign_uuid": "nope", "start_at": "2020-01-01T09:00:00Z"},
        },
    )
    error = _error(answer, 422, "validation_failed")
    assert error["message"] == "group_id must be a UUID (and 3 more)"
    by_field = {d["field"]: d["message"] for d in error["details"]}
    assert by_field == {
        "group_id": "must be a UUID",
        "profiles[0].person": "a profile needs person.phone_number (E.164) or person.email_address",
        "schedule.campaign_uuid": "must be a UUID",
        "schedule.start_at": "start_at is in the past",
    }
    text = answer.text
    for machine in ("Value error", "should match pattern", "Input should", "[0-9a-fA-F]"):
        assert machine not in text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/optimized/triggers", {"group_id": str(uuid.uuid4()), "profiles": [profile(1)]}),
        (
            "POST",
            "/v1/optimized/triggers",
            {
                "group_id": str(uuid.uuid4()),
                "profiles": [profile(1)],
                "schedule": {"campaign_uuid": CAMPAIGN},
            },
        ),
        ("POST", "/v1/optimove/triggers", {"event_generator_id": "g", "topic_key": "t", "context": {}}),
        ("PUT", "/v1/optimove/generators/g-1/schema", {"schema": SCHEMA}),
        ("POST", "/v1/results/replay", {"since": "2030-01-01T00:00:00Z"}),
    ],
)
def test_an_unknown_field_is_a_422_naming_it_on_every_route(
    api: Api, relay: LocalStack, method: str, path: str, body: dict[str, Any]
) -> None:
    """A misspelt field is never dropped silently (a `sendAt` would send the work now)."""
    misspelt = {**body, "sendAt": "2030-01-01T09:00:00Z"}
    if "schedule" in body:
        misspelt = {**body, "schedule": {**body["schedule"], "start": "2030-01-01T09:00:00Z"}}
    error = _error(api.http.request(method, path, json=misspelt), 422, "validation_failed")
    [detail] = error["details"]
    assert detail["field"] in ("sendAt", "schedule.start")
    assert detail["message"] == "is not a field of this request (check its spelling)"
    assert _executions(api) == 0
    assert api.http.get("/v1/optimove/generators/g-1/schema").status_code == 404


# -- unknown routes and methods -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/nothing", "/", "/v1/executions/x/results/y", "/v2/executions"])
def test_an_unknown_route_is_a_404_in_the_error_shape(api: Api, relay: LocalStack, path: str) -> None:
    error = _error(api.http.get(path), 404, "not_found")
    assert path in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/v1/executions", "GET"),
        ("PUT", f"/v1/executions/{uuid.uuid4()}", "DELETE, GET"),
        ("GET", "/v1/optimized/triggers", "POST"),
        ("TRACE", "/v1/optimized/triggers", "POST"),
        ("DELETE", "/v1/optimove/generators/g/schema", "GET, PUT"),
        ("GET", "/v1/webhooks/optimized", "POST"),  # another function's route: still named
    ],
)
def test_a_wrong_method_is_a_405_naming_the_right_ones(
    api: Api, relay: LocalStack, method: str, path: str, allowed: str
) -> None:
    answer = api.http.request(method, path)
    error = _error(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == allowed
    assert allowed in error["message"]


def test_unknown_routes_still_need_the_api_key(relay: LocalStack) -> None:
    answer = httpx.get(f"{relay.api_url}/v1/nothing")
    _error(answer, 401, "unauthorized")


# -- the listing's status filter ----------------------------------------------------------------------


def test_every_status_of_every_destination_can_be_filtered_on(api: Api, relay: LocalStack) -> None:
    statuses = registry.statuses()
    assert {"scheduled", "partially_cancelled", "published", "completed"} <= set(statuses)
    for status in statuses:
        page = api.http.get("/v1/executions", params={"status": status})
        assert page.status_code == 200, (status, page.text)


def test_an_unknown_status_is_a_422_listing_the_valid_ones(api: Api, relay: LocalStack) -> None:
    error = _error(api.http.get("/v1/executions", params={"status": "done"}), 422, "validation_failed")
    assert error["message"].startswith("status must be one of 'queued', ")
    for status in registry.statuses():
        assert f"'{status}'" in error["message"]
