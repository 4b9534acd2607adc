"""Context schemas cannot hang a trigger: patterns run on RE2 (linear time), and a schema that
could only fail later (a pattern RE2 refuses, a $ref that does not resolve, a $ref loop) is
refused when it is registered."""

from __future__ import annotations

import time
from typing import Any

import pytest
from relay.core import safe_schema
from relay.destinations.optimove import schemas
from relay.destinations.optimove.schemas import SchemaInvalid, SchemaRegistry

EVIL = "^(a+)+$"  # seconds on 30 characters with Python's re
ATTACK = "a" * 40 + "!"


def _errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [e.message for e in safe_schema.validator_class()(schema).iter_errors(instance)]


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "string", "pattern": EVIL}, ATTACK),
        ({"type": "object", "patternProperties": {EVIL: {"type": "integer"}}}, {ATTACK: "x", "aaa": "x"}),
        ({"type": "object", "patternProperties": {EVIL: {}}, "additionalProperties": False}, {ATTACK: 1}),
        ({"type": "object", "propertyNames": {"pattern": EVIL}}, {ATTACK: 1}),
    ],
    ids=["pattern", "patternProperties", "additionalProperties", "propertyNames"],
)
def test_a_catastrophic_pattern_is_evaluated_in_linear_time(schema: dict[str, Any], instance: Any) -> None:
    started = time.monotonic()
    errors = _errors(schema, instance)
    assert time.monotonic() - started < 0.5
    assert errors  # and evaluated correctly: the attack does not match


def test_patterns_keep_their_meaning() -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string", "pattern": r"^m-\d+$"}},
        "patternProperties": {"^x-": {"type": "string"}},
        "additionalProperties": False,
    }
    assert _errors(schema, {"id": "m-12", "x-tag": "a"}) == []
    assert _errors(schema, {"id": "M-12"}) == ["'M-12' does not match '^m-\\\\d+$'"]
    assert _errors(schema, {"x-tag": 1}) == ["1 is not of type 'string'"]
    assert "'other' does not match any of the regexes: '^x-'" in _errors(schema, {"other": 1})
    assert _errors({"type": "string", "pattern": "b"}, "abc") == []  # search, not match


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "string", "pattern": r"(a)\1"}, r"(a)\\1"),
        ({"type": "object", "patternProperties": {"(?=x)": {}}}, "(?=x)"),
        ({"properties": {"a": {"pattern": "(?<!b)a"}}}, "(?<!b)a"),
        ({"$ref": "#/$defs/nope"}, "#/$defs/nope"),
        ({"properties": {"a": {"$ref": "https://schemas.example/a.json"}}}, "https://schemas.example/a.json"),
        ({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}, "$ref loop"),
        ({"$ref": "#"}, "$ref loop"),
        ({"unevaluatedProperties": False, "patternProperties": {"^a": {}}}, "unevaluatedProperties"),
    ],
    ids=[
        "backreference",
        "lookahead",
        "lookbehind",
        "dangling-ref",
        "remote-ref",
        "ref-loop",
        "root-loop",
        "uneval",
    ],
)
def test_what_cannot_be_evaluated_safely_is_refused_by_name(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(SchemaInvalid) as refused:
        schemas.check_schema(schema)
    assert named in str(refused.value)


@pytest.mark.parametrize(
    "schema",
    [
        {  # recursion that reads the instance: fine
            "$defs": {
                "node": {"type": "object", "properties": {"kids": {"items": {"$ref": "#/$defs/node"}}}}
            },
            "$ref": "#/$defs/node",
        },
        {  # a nested $id changes the base of the $refs below it
            "$id": "https://relay.example/root",
            "$defs": {"a": {"$id": "a.json", "$defs": {"b": {"type": "string"}}, "$ref": "#/$defs/b"}},
            "$ref": "a.json",
        },
        {"$ref": "https://json-schema.org/draft/2020-12/schema"},  # the meta-schema ships with jsonschema
        {"type": "object", "properties": {"pattern": {"type": "string"}}, "enum": [{"pattern": "(a)\\1"}]},
    ],
    ids=["recursive", "nested-id", "meta-schema", "pattern-as-data"],
)
def test_safe_schemas_are_accepted(schema: dict[str, Any]) -> None:
    schemas.check_schema(schema)


def test_a_stored_schema_that_cannot_be_evaluated_is_schema_invalid_not_a_crash() -> None:
    """A schema stored before these checks existed: every trigger gets SchemaInvalid (a 422)."""
    for bad in ({"$ref": "#/$defs/nope"}, {"properties": {"a": {"pattern": r"(a)\1"}}}, {"$ref": "#"}):
        registry = SchemaRegistry(table=None, file_path=None, cache_s=0)  # type: ignore[arg-type]
        registry.lookup = lambda generator_id, fresh=False, bad=bad: ("api", bad, None)  # type: ignore[method-assign]
        with pytest.raises(SchemaInvalid, match="gen-1"):
            registry.check("gen-1", {"a": "a"})
