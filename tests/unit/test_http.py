"""relay.core.http: field paths, the error shape, auth, body limits."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError
from relay.core.http import ApiError, authenticate, check_body_size, field_path, json_body, validation_error
from relay.destinations.optimized.models import OptimizedTrigger

GROUP = "cc6cdf44-acf4-4b39-bd17-55b70b769812"


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("body", "profiles", 3, "person", "phone_number"), "profiles[3].person.phone_number"),
        (("body", "profiles", 3, "person"), "profiles[3].person"),
        (("body", "group_id"), "group_id"),
        (("query", "limit"), "limit"),
        (("body",), ""),
        ((0, "x"), "[0].x"),
    ],
)
def test_field_path(loc: tuple[object, ...], path: str) -> None:
    assert field_path(loc) == path


def _errors(payload: object) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        OptimizedTrigger.model_validate(payload)
    return [{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]


def test_validation_error_names_each_field() -> None:
    people = [{"person": {"phone_number": "+35840123456"}}] * 3 + [{"person": {"first_name": "x"}}]
    error = validation_error(_errors({"group_id": "nope", "profiles": people}))
    assert error.status == 422
    assert error.code == "validation_failed"
    fields = [d.field for d in error.details]
    assert fields == ["group_id", "profiles[3].person"]
    assert error.message.startswith("group_id must be a UUID")
    assert error.message.endswith("(and 1 more)")
    body = json.loads(error.body())
    assert set(body) == {"error"}
    assert body["error"]["details"][1]["field"] == "profiles[3].person"


def test_validation_error_for_bad_phone() -> None:
    bad = [{"person": {"phone_number": "0401234567"}}]
    [detail] = validation_error(_errors({"group_id": GROUP, "profiles": bad})).details
    assert detail.field == "profiles[0].person.phone_number"
    assert "E.164" in detail.message


def test_invalid_json_is_400() -> None:
    invalid = {"type": "json_invalid", "loc": ("body", 1), "msg": "x", "ctx": {"error": "bad"}}
    error = validation_error([invalid])
    assert (error.status, error.code) == (400, "invalid_json")
    assert "bad" in error.message
    with pytest.raises(ApiError) as caught:
        json_body({"body": "{"})
    assert caught.value.status == 400


def test_lambda_response_shape() -> None:
    response = ApiError(409, "conflict", "no").as_lambda_response()
    assert response["statusCode"] == 409
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"]) == {"error": {"code": "conflict", "message": "no", "details": []}}


@pytest.mark.parametrize(
    "headers",
    [None, {}, {"authorization": "Bearer"}, {"authorization": "Basic k1"}, {"authorization": "Bearer k3"}],
)
def test_authenticate_refuses(headers: dict[str, str] | None) -> None:
    with pytest.raises(ApiError) as caught:
        authenticate(headers, frozenset({"k1", "k2"}))
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


def test_authenticate_accepts_any_configured_key_and_never_echoes_it() -> None:
    one = authenticate({"authorization": "Bearer k1"}, frozenset({"k1", "k2"}))
    two = authenticate({"Authorization": "bearer k2"}, frozenset({"k1", "k2"}))
    assert one != two
    assert "k1" not in one
    assert one.startswith("key-")
    with pytest.raises(ApiError):
        authenticate({"authorization": "Bearer k1"}, frozenset())


def test_check_body_size_counts_decoded_bytes() -> None:
    check_body_size({"body": "x" * 1024}, 1024)
    with pytest.raises(ApiError) as caught:
        check_body_size({"body": "x" * 1025}, 1024)
    assert (caught.value.status, caught.value.code) == (413, "payload_too_large")
    encoded = base64.b64encode(b"y" * 1025).decode()
    with pytest.raises(ApiError):
        check_body_size({"body": encoded, "isBase64Encoded": True}, 1024)
    check_body_size({}, 1)
