"""A context schema cannot hang or break triggers: patterns run on RE2, and what cannot be
evaluated safely is a 422 when the schema is registered (and, for a schema stored before, a 422
on the trigger) - never a hung request or a 500."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Api, relay_env
from relay_local.stack import LocalStack

pytestmark = pytest.mark.integration

EVIL = "^(a+)+$"  # seconds on 30 characters with Python's re


@pytest.fixture
def fresh_schemas(relay: LocalStack) -> Iterator[None]:
    with relay_env(OPTIMOVE_SCHEMA_CACHE_S="0"):
        yield


def _put(api: Api, generator: str, schema: dict[str, Any]) -> Any:
    return api.http.put(f"/v1/optimove/generators/{generator}/schema", json={"schema": schema})


def _trigger(api: Api, generator: str, context: dict[str, Any]) -> Any:
    body = {"event_generator_id": generator, "topic_key": "topic-1", "context": context}
    return api.http.post("/v1/optimove/triggers", json=body)


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        (
            {"type": "object", "properties": {"code": {"type": "string", "pattern": r"^(\w)\1$"}}},
            r"^(\\w)\\1$",
        ),
        ({"type": "object", "patternProperties": {"^(?!x)": {}}}, "^(?!x)"),
        ({"type": "object", "properties": {"code": {"$ref": "#/$defs/missing"}}}, "#/$defs/missing"),
        ({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}, "$ref loop"),
    ],
    ids=["backreference", "lookahead", "dangling-ref", "ref-loop"],
)
def test_a_schema_that_cannot_be_evaluated_safely_is_a_422_naming_why(
    api: Api, fresh_schemas: None, schema: dict[str, Any], named: str
) -> None:
    generator = str(uuid.uuid4())
    answer = _put(api, generator, schema)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "schema_invalid"
    assert named in error["message"]
    assert api.http.get(f"/v1/optimove/generators/{generator}/schema").status_code == 404  # not stored


def test_a_catastrophic_pattern_does_not_hang_a_trigger(api: Api, fresh_schemas: None) -> None:
    generator = str(uuid.uuid4())
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    assert _put(api, generator, schema).status_code == 200
    started = time.monotonic()
    refused = _trigger(api, generator, {"code": "a" * 5000 + "!"})
    assert time.monotonic() - started < 5
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "context_invalid"
    assert refused.json()["error"]["details"][0]["field"] == "context.code"
    assert _trigger(api, generator, {"code": "aaaa"}).status_code == 202


def test_a_stored_schema_with_a_dangling_ref_is_a_422_on_trigger_not_a_500(
    api: Api, ddb: Any, fresh_schemas: None
) -> None:
    """Stored before registration checked $refs: every trigger of its generator is a 4xx."""
    generator = str(uuid.uuid4())
    bad = {"type": "object", "properties": {"code": {"$ref": "#/$defs/missing"}}}
    ddb.put_item(
        TableName="RelayTable",
        Item={
            "pk": {"S": f"OPTIMOVE_SCHEMA#{generator}"},
            "sk": {"S": "SCHEMA"},
            "event_generator_id": {"S": generator},
            "schema_json": {"S": json.dumps(bad)},
            "updated_at": {"N": str(time.time())},
            "updated_by": {"S": "before-the-check"},
        },
    )
    answer = _trigger(api, generator, {"code": "x"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "schema_invalid"
    assert generator in answer.json()["error"]["message"]
