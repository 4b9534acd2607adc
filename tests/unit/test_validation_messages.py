"""422s read as sentences for people: pydantic's wording is rewritten in one place
(relay.core.validation_messages), so every route and model gets it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError
from relay.core.http import validation_error
from relay.core.validation_messages import sentence
from relay.destinations.optimized.models import OptimizedTrigger
from relay.destinations.optimove.models import GeneratorSchema, OptimoveTrigger
from relay.results.models import ReplayRequest

GROUP = "cc6cdf44-acf4-4b39-bd17-55b70b769812"
PERSON = {"phone_number": "+35840123456"}
# What a person should never read in an answer: a regex, pydantic's prefixes and phrasing.
MACHINE_WORDS = re.compile(
    r"Value error|Assertion failed|should match pattern|Input should|String should|\^\[|\]\{"
)


def _errors(model: type, body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(body)
    return [{**e, "loc": ("body", *e["loc"])} for e in refused.value.errors()]


def _answer(model: type, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    error = validation_error(_errors(model, body))
    assert error.status == 422
    return error.message, {d.field or "": d.message for d in error.details}


def test_a_group_id_that_is_not_a_uuid_says_so_without_the_regex() -> None:
    message, details = _answer(OptimizedTrigger, {"group_id": "my-group", "profiles": [{"person": PERSON}]})
    assert message == "group_id must be a UUID"
    assert details == {"group_id": "must be a UUID"}


def test_a_validators_own_words_lose_pydantics_prefix() -> None:
    message, details = _answer(
        OptimizedTrigger, {"group_id": GROUP, "profiles": [{"person": {"first_name": "A"}}]}
    )
    assert (
        details["profiles[0].person"] == "a profile needs person.phone_number (E.164) or person.email_address"
    )
    assert (
        message == "profiles[0].person: a profile needs person.phone_number (E.164) or person.email_address"
    )
    _, phone = _answer(
        OptimizedTrigger, {"group_id": GROUP, "profiles": [{"person": {"phone_number": "040"}}]}
    )
    assert phone["profiles[0].person.phone_number"] == "must be an E.164 phone number such as +35840123456"


@pytest.mark.parametrize(
    ("model", "body", "field", "words"),
    [
        (OptimizedTrigger, {"profiles": [{"person": PERSON}]}, "group_id", "is required"),
        (OptimizedTrigger, {"group_id": GROUP, "profiles": []}, "profiles", "must not be empty"),
        (
            OptimizedTrigger,
            {"group_id": GROUP, "profiles": [{"person": PERSON}], "schedule": {"campaign_uuid": "x"}},
            "schedule.campaign_uuid",
            "must be a UUID",
        ),
        (
            OptimizedTrigger,
            {
                "group_id": GROUP,
                "profiles": [{"person": PERSON}],
                "schedule": {"campaign_uuid": GROUP, "start_at": "soon"},
            },
            "schedule.start_at",
            "must be an ISO 8601 date and time, e.g. 2030-01-01T09:00:00Z",
        ),
        (
            OptimizedTrigger,
            {
                "group_id": GROUP,
                "profiles": [{"person": PERSON}],
                "schedule": {"campaign_uuid": GROUP, "calls_per_minute": 61},
            },
            "schedule.calls_per_minute",
            "must be 60 or less",
        ),
        (
            OptimoveTrigger,
            {"event_generator_id": "a b", "topic_key": "t", "context": {}},
            "event_generator_id",
            "must be 1 to 128 letters, digits, dots, dashes or underscores",
        ),
        (
            OptimoveTrigger,
            {"event_generator_id": "g", "topic_key": "", "context": {}},
            "topic_key",
            "must not be empty",
        ),
        (
            OptimoveTrigger,
            {"event_generator_id": "g", "topic_key": "t", "context": []},
            "context",
            "must be a JSON object",
        ),
        (
            ReplayRequest,
            {"since": "2030-01-01T00:00:00Z", "type": "nope"},
            "type",
            "must be one of 'sms.delivered'",
        ),
    ],
)
def test_each_kind_of_mistake_reads_as_a_sentence(model: type, body: dict, field: str, words: str) -> None:
    message, details = _answer(model, body)
    assert details[field].startswith(words), details
    assert not MACHINE_WORDS.search(message), message
    assert not any(MACHINE_WORDS.search(m) for m in details.values()), details


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (OptimizedTrigger, {"group_id": GROUP, "profiles": [{"person": PERSON}], "sendAt": "x"}),
        (
            OptimizedTrigger,
            {
                "group_id": GROUP,
                "profiles": [{"person": PERSON}],
                "schedule": {"campaign_uuid": GROUP, "start": "x"},
            },
        ),
        (OptimoveTrigger, {"event_generator_id": "g", "topic_key": "t", "context": {}, "sendAt": "x"}),
        (GeneratorSchema, {"schema": {}, "sendAt": "x"}),
        (ReplayRequest, {"since": "2030-01-01T00:00:00Z", "sendAt": "x"}),
    ],
)
def test_an_unknown_field_is_refused_the_same_way_on_every_request(model: type, body: dict) -> None:
    message, details = _answer(model, body)
    [(field, words)] = details.items()
    assert field.endswith(("sendAt", "start"))
    assert words == "is not a field of this request (check its spelling)"
    assert message == f"{field} {words}"


def test_a_status_outside_the_list_names_every_valid_one() -> None:
    error = {
        "type": "literal_error",
        "loc": ("query", "status"),
        "msg": "Input should be 'a', 'b' or 'c'",
        "ctx": {"expected": "'a', 'b' or 'c'"},
    }
    assert validation_error([error]).message == "status must be one of 'a', 'b', 'c'"


def test_types_without_a_sentence_of_their_own_are_reworded() -> None:
    assert (
        sentence({"type": "value_error", "msg": "Value error, start_at is in the past"})
        == "start_at is in the past"
    )
    assert sentence({"type": "new_kind", "msg": "Input should be a valid thing"}) == "must be a valid thing"
    assert sentence({"type": "string_pattern_mismatch", "msg": "...", "ctx": {"pattern": "^x$"}}) == (
        "must be in the expected format"
    )


def test_several_problems_count_the_rest() -> None:
    error = validation_error(_errors(OptimizedTrigger, {"group_id": "x", "profiles": []}))
    assert error.message == "group_id must be a UUID (and 1 more)"
