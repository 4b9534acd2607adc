"""Hostile input gets a clear 4xx in the error shape and changes nothing: never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from conftest import Api, profile, schedule
from relay_local.stack import LocalStack

pytestmark = pytest.mark.integration

TRIGGERS = "/v1/optimized/triggers"


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _trigger(group: str, **person_extra: Any) -> dict[str, Any]:
    person = {**profile(1)["person"], **person_extra}
    return {"group_id": group, "profiles": [{"person": person}], "schedule": schedule(3600)}


def _executions(api: Api) -> int:
    return len(api.http.get("/v1/executions", params={"limit": 100}).json()["items"])


def _raw(api: Api, method: str, path: str, body: bytes, content_type: str = "application/json") -> Any:
    return api.http.request(method, path, content=body, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("huge_integer", 400),
        ("deep_json", 400),
        ("deep_person_field", 400),
        ("far_future_start", 422),
        ("nan", 422),
        ("infinity", 422),
        ("invalid_utf8", 400),
    ],
)
def test_bad_trigger_bodies_get_a_4xx_and_store_nothing(
    api: Api, relay: LocalStack, group: str, case: str, status: int
) -> None:
    body: bytes
    if case == "huge_integer":
        body = json.dumps(_trigger(group)).replace('"P1"', "1" * 5000).encode()
    elif case == "deep_json":
        body = ("[" * 5000 + "]" * 5000).encode()
    elif case == "deep_person_field":
        body = json.dumps(_trigger(group, extra=_nested(300))).encode()
    elif case == "far_future_start":
        trigger = _trigger(group)
        trigger["schedule"]["start_at"] = "9999-12-31T23:59:59-10:00"
        body = json.dumps(trigger).encode()
    elif case in ("nan", "infinity"):
        body = json.dumps(_trigger(group)).replace('"P1"', "NaN" if case == "nan" else "Infinity").encode()
    else:
        body = b"\xff\xfe{"
    answer = _raw(api, "POST", TRIGGERS, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["message"]
    assert _executions(api) == 0


def test_a_chunk_over_the_item_limit_is_split_or_refused(api: Api, relay: LocalStack, group: str) -> None:
    people = [profile(i, blob="x" * 9000) for i in range(50)]  # ~450 KB: over one item's 400 KB
    body = {"group_id": group, "profiles": people, "schedule": schedule(3600)}
    answer = api.http.post(TRIGGERS, json=body)
    assert answer.status_code in (202, 413), answer.text


def test_text_plain_json_is_parsed_or_refused_with_415(api: Api, relay: LocalStack, group: str) -> None:
    answer = _raw(api, "POST", TRIGGERS, json.dumps(_trigger(group)).encode(), "text/plain")
    assert answer.status_code in (202, 415), answer.text


@pytest.mark.parametrize(("path", "params"), [("/v1/executions", {}), ("/v1/results", {"unmatched": "true"})])
def test_a_next_token_of_the_wrong_shape_is_a_400(
    api: Api, relay: LocalStack, path: str, params: dict[str, str]
) -> None:
    token = base64.urlsafe_b64encode(json.dumps({"pk": 1, "x": [1]}).encode()).decode()
    answer = api.http.get(path, params={**params, "next_token": token})
    assert answer.status_code == 400, answer.text


def test_a_far_future_schedules_window_is_a_4xx(api: Api, relay: LocalStack) -> None:
    answer = api.http.get("/v1/schedules", params={"from": "9999-12-31T23:59:59-14:00"})
    assert 400 <= answer.status_code < 500, answer.text


@pytest.mark.parametrize("method", ["TRACE", "PATCH"])
def test_an_undeclared_method_is_a_404_or_405(api: Api, relay: LocalStack, method: str) -> None:
    answer = api.http.request(method, TRIGGERS)
    assert answer.status_code in (404, 405), answer.text
