"""The edges where hostile input is turned into a clear 4xx before it reaches storage."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from relay.core.http import MAX_JSON_DEPTH, ApiError, check_json_body
from relay.core.paging import decode_token, encode_token
from relay.core.timeutil import to_utc
from relay.destinations.optimized.accept import ProfileTooLarge, split_into_chunks
from relay.executions.store import MAX_TRANSACTION_BYTES, _fitting


def _event(body: bytes, content_type: str = "application/json") -> dict:
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {"body": text, "isBase64Encoded": encoded, "headers": {"content-type": content_type}}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"\xff\xfe{", 400, "UTF-8"),
        (b"[" * 5000 + b"]" * 5000, 400, "nests deeper"),
        (json.dumps({"a": json.loads("[" * 40 + "]" * 40)}).encode(), 400, "nests deeper"),
        (b'{"n": ' + b"1" * 5000 + b"}", 400, "not valid JSON"),
        (b'{"n": NaN}', 422, "NaN is not a JSON number"),
        (b'{"n": -Infinity}', 422, "-Infinity is not a JSON number"),
        (b'{"n": ', 400, "not valid JSON"),
    ],
)
def test_a_body_that_is_not_usable_json_is_refused(body: bytes, status: int, words: str) -> None:
    with pytest.raises(ApiError) as refused:
        check_json_body(_event(body))
    assert refused.value.status == status
    assert words in refused.value.message


def test_json_sent_as_another_type_is_read_as_json() -> None:
    event = check_json_body(_event(b'{"a": 1}', "application/x-www-form-urlencoded"))
    assert event["headers"]["content-type"] == "application/json"
    assert event["body"] == '{"a": 1}'
    assert check_json_body({"body": "", "headers": {}}) == {"body": "", "headers": {}}


def test_json_nested_to_the_limit_is_fine() -> None:
    value: object = 1
    for _ in range(MAX_JSON_DEPTH):
        value = {"a": value}
    check_json_body(_event(json.dumps(value).encode()))


KEY = {"gsi1pk": {"S": "EXECUTIONS"}, "gsi1sk": {"S": "2026#x"}, "pk": {"S": "EXEC#x"}, "sk": {"S": "META"}}
LISTING = {"partition": {"gsi1pk": "EXECUTIONS"}, "sort_keys": ["gsi1sk", "pk", "sk"]}


def test_a_token_round_trips() -> None:
    assert decode_token(encode_token(KEY), **LISTING) == KEY
    assert decode_token(None, **LISTING) is None


@pytest.mark.parametrize(
    "key",
    [
        {"pk": 1, "x": [1]},
        [1, 2],
        {**KEY, "gsi1pk": {"S": "OTHER"}},  # another listing's partition
        {**KEY, "gsi1sk": {"M": {}}},
        {**KEY, "gsi1sk": {"N": "many"}},
        {k: v for k, v in KEY.items() if k != "sk"},
    ],
)
def test_a_token_of_the_wrong_shape_is_a_value_error(key: object) -> None:
    with pytest.raises(ValueError, match="next_token is not valid"):
        decode_token(encode_token(key), **LISTING)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="next_token is not valid"):
        decode_token("%%%not-base64", **LISTING)


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-10:00", "9000-01-01T00:00:00+00:00"])
def test_a_time_beyond_the_representable_is_a_value_error(value: str) -> None:
    with pytest.raises(ValueError, match="too far ahead"):
        to_utc(datetime.fromisoformat(value), None)
    assert to_utc(datetime(2030, 1, 1), "Europe/Helsinki") == datetime(2029, 12, 31, 22, tzinfo=UTC)


def test_chunks_are_split_by_bytes_as_well_as_count() -> None:
    people = [{"index": i, "blob": "x" * 9000} for i in range(50)]
    chunks = split_into_chunks(people, 50, 300_000)
    assert [count for _, count in chunks] == [33, 17]
    assert all(len(text) <= 300_000 for text, _ in chunks)
    assert [p["index"] for text, _ in chunks for p in json.loads(text)] == list(range(50))
    assert [count for _, count in split_into_chunks([{"index": i} for i in range(120)], 50, 300_000)] == [
        50,
        50,
        20,
    ]
    with pytest.raises(ProfileTooLarge, match=r"profiles\[3\]"):
        split_into_chunks([{"index": 3, "blob": "x" * 300_001}], 50, 300_000)


def test_a_transaction_is_cut_by_bytes_as_well_as_count() -> None:
    big = [{"blob": "x" * 290_000} for _ in range(30)]
    assert _fitting(big, 100, MAX_TRANSACTION_BYTES) == 10
    assert _fitting([{"a": 1}] * 150, 100, MAX_TRANSACTION_BYTES) == 100
