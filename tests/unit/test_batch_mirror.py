"""Optimized.app results as Batch.com profile updates (pure): the plan made when a result is
recorded (custom id from the ref or an attribute, or skipped with the reason), the operation
(event name per type, the result's fields as attributes within the rules, the event's date), and
opt-outs as unsubscribed channels."""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import pytest
from pydantic import ValidationError
from relay.destinations.batch import mirror
from relay.destinations.batch.models import Operation
from relay.destinations.batch.settings import DEFAULT_EVENT_NAMES, BatchSettings

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
OCCURRED = "2027-01-15T07:30:00Z"


def settings(**values: Any) -> BatchSettings:
    return BatchSettings(batch_mirror_results=True, **values)


def result(type_: str = "sms.delivered", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": "evt-1",
        "type": type_,
        "source_type": "sms.delivered",
        "occurred_at": OCCURRED,
        "profile_uuid": "pu-1",
        "external_id": None,
        "batch_uuid": "bu-1",
        "schedule_uuid": "su-1",
        "campaign_uuid": "cu-1",
        "phone": "+358401234567",
        "email": None,
        "received_at": "2027-01-15T07:30:01.000Z",
        "matched": True,
        "execution_id": "ex-1",
        "chunk_seq": 0,
        "profile_index": 7,
        "ref": "customer-42",
        "raw": {"id": "evt-1"},
        **extra,
    }


# -- the plan ---------------------------------------------------------------------------------------


def test_the_custom_id_is_the_input_profiles_ref_by_default() -> None:
    plan = mirror.plan(result(), {}, settings())
    assert plan is not None
    assert plan.model_dump() == {
        "destination": "batch",
        "status": "mirrored",
        "profile": "customer-42",
        "execution_id": mirror.execution_id_of("evt-1"),
        "reason": None,
    }


def test_the_mirror_execution_id_is_the_same_for_the_same_result_and_only_for_it() -> None:
    assert (
        mirror.execution_id_of("evt-1") == mirror.execution_id_of("evt-1") != mirror.execution_id_of("evt-2")
    )


def test_the_custom_id_can_come_from_an_attribute_of_the_input_profile() -> None:
    s = settings(batch_custom_id_from="attribute:crm_id")
    assert s.custom_id_attribute() == "crm_id"
    plan = mirror.plan(result(), {"crm_id": 90210}, s)
    assert plan is not None
    assert (plan.status, plan.profile) == ("mirrored", "90210")


@pytest.mark.parametrize(
    ("custom_id_from", "ref", "attributes", "reason"),
    [
        ("ref", None, {}, "the input profile has no ref (BATCH_CUSTOM_ID_FROM=ref)"),
        ("ref", "   ", {}, "the input profile's ref is empty (BATCH_CUSTOM_ID_FROM=ref)"),
        (
            "attribute:crm_id",
            "customer-42",
            {"other": "x"},
            "the input profile has no attribute 'crm_id' (BATCH_CUSTOM_ID_FROM=attribute:crm_id)",
        ),
        (
            "attribute:crm_id",
            "customer-42",
            {"crm_id": True},
            "the input profile's attribute 'crm_id' is a bool, not a text or a number"
            " (BATCH_CUSTOM_ID_FROM=attribute:crm_id)",
        ),
        (
            "ref",
            "x" * 513,
            {},
            "the input profile's ref has 513 characters; a custom id has at most 512"
            " (BATCH_MAX_CUSTOM_ID_LENGTH)",
        ),
    ],
)
def test_a_result_whose_profile_has_no_custom_id_is_skipped_with_the_reason(
    custom_id_from: str, ref: str | None, attributes: dict[str, Any], reason: str
) -> None:
    plan = mirror.plan(result(ref=ref), attributes, settings(batch_custom_id_from=custom_id_from))
    assert plan is not None
    assert (plan.status, plan.profile, plan.execution_id, plan.reason) == ("skipped", None, None, reason)


def test_nothing_is_planned_when_mirroring_is_off_the_result_matched_nothing_or_its_type_has_no_event() -> (
    None
):
    assert mirror.plan(result(), {}, BatchSettings()) is None
    assert mirror.plan(result(execution_id=None, matched=False), {}, settings()) is None
    assert mirror.plan(result("unknown"), {}, settings()) is None  # no event name by default
    assert mirror.plan(result(), {}, settings(batch_event_names={"sms.delivered": None})) is None
    # An opt-out without an event still unsubscribes.
    plan = mirror.plan(
        result("profile.opted_out"), {}, settings(batch_event_names={"profile.opted_out": None})
    )
    assert plan is not None
    assert plan.status == "mirrored"


# -- the operation ----------------------------------------------------------------------------------


def test_a_result_becomes_one_event_dated_when_it_happened_with_its_fields_as_attributes() -> None:
    op = mirror.operation(result(), "customer-42", settings(), NOW)
    assert op == {
        "identifiers": {"custom_id": "customer-42"},
        "events": [
            {
                "name": "sms_delivered",
                "time": "2027-01-15T07:30:00Z",
                "attributes": {
                    "result_type": "sms.delivered",
                    "event_id": "evt-1",
                    "source_type": "sms.delivered",
                    "execution_id": "ex-1",
                    "ref": "customer-42",
                    "campaign_uuid": "cu-1",
                    "schedule_uuid": "su-1",
                    "batch_uuid": "bu-1",
                    "profile_uuid": "pu-1",
                    "phone": "+358401234567",
                    "profile_index": 7,
                    "occurred_at": "2027-01-15T07:30:00Z",
                },
            }
        ],
    }
    names = op["events"][0]["attributes"]
    assert len(names) <= 15
    assert all(len(n) <= 30 for n in names)


@pytest.mark.parametrize(
    ("type_", "name"),
    [
        ("sms.delivered", "sms_delivered"),
        ("sms.failed", "sms_failed"),
        ("sms.reply", "sms_replied"),
        ("email.delivered", "email_delivered"),
        ("email.opened", "email_opened"),
        ("email.bounced", "email_bounced"),
        ("call.completed", "call_completed"),
        ("call.no_answer", "call_no_answer"),
        ("call.failed", "call_failed"),
        ("profile.opted_out", "opted_out"),
    ],
)
def test_each_result_type_has_its_default_event_name(type_: str, name: str) -> None:
    assert mirror.operation(result(type_), "c", settings(), NOW)["events"][0]["name"] == name


def test_event_names_are_configurable_per_type_and_checked_against_the_name_pattern() -> None:
    s = settings(batch_event_names={"call.completed": "relay_call_answered"})
    assert (
        mirror.operation(result("call.completed"), "c", s, NOW)["events"][0]["name"] == "relay_call_answered"
    )
    assert mirror.operation(result("sms.reply"), "c", s, NOW)["events"][0]["name"] == "sms_replied"
    with pytest.raises(ValidationError, match="BATCH_EVENT_NAME_PATTERN"):
        settings(batch_event_names={"sms.delivered": "SMS Delivered!"})
    with pytest.raises(ValidationError, match="no result type"):
        settings(batch_event_names={"sms.delivred": "x"})
    # A looser pattern (the REST API may accept more than the SDKs) lets such a name through.
    loose = settings(
        batch_event_name_pattern=r"^[A-Za-z0-9_ ]{1,64}$", batch_event_names={"sms.failed": "SMS failed"}
    )
    assert loose.event_names()["sms.failed"] == "SMS failed"


def test_texts_are_cut_to_the_longest_batch_takes() -> None:
    op = mirror.operation(result(source_type="s" * 400), "c", settings(batch_max_text_length=300), NOW)
    assert op["events"][0]["attributes"]["source_type"] == "s" * 300


@pytest.mark.parametrize(
    ("occurred_at", "dated"),
    [
        (OCCURRED, True),
        ("2027-01-14T07:59:59Z", False),  # older than the 24 h Batch takes: dated on arrival
        ("2027-01-15T08:00:05Z", False),  # in the future (a clock ahead): dated on arrival
        ("not a date", False),
        (None, False),
    ],
)
def test_the_event_is_dated_at_occurred_at_only_within_the_allowed_age(
    occurred_at: str | None, dated: bool
) -> None:
    [event] = mirror.operation(result(occurred_at=occurred_at), "c", settings(), NOW)["events"]
    assert ("time" in event) is dated
    if dated:
        assert event["time"] == event["attributes"]["occurred_at"]


def test_the_allowed_age_is_a_setting() -> None:
    [event] = mirror.operation(result(), "c", settings(batch_event_max_age_s=600), NOW)["events"]
    assert "time" not in event  # 30 minutes old, 10 allowed


# -- opt-outs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "email", "attributes"),
    [
        ("+358401234567", None, {"$sms_marketing": "unsubscribed"}),
        (None, "jane@example.com", {"$email_marketing": "unsubscribed"}),
        (
            "+358401234567",
            "jane@example.com",
            {"$sms_marketing": "unsubscribed", "$email_marketing": "unsubscribed"},
        ),
        # No channel named: both (a missed opt-out is a compliance problem, an extra one is not).
        (None, None, {"$sms_marketing": "unsubscribed", "$email_marketing": "unsubscribed"}),
    ],
)
def test_an_opt_out_unsubscribes_its_channel_and_is_an_event_too(
    phone: str | None, email: str | None, attributes: dict[str, str]
) -> None:
    op = mirror.operation(result("profile.opted_out", phone=phone, email=email), "c", settings(), NOW)
    assert op["attributes"] == attributes
    assert op["events"][0]["name"] == "opted_out"


def test_only_opt_outs_change_subscriptions() -> None:
    for type_ in ("sms.failed", "sms.reply", "email.bounced", "call.failed"):
        assert "attributes" not in mirror.operation(result(type_, email="a@b.c"), "c", settings(), NOW)


def test_a_stored_plan_is_found_only_when_it_says_mirrored() -> None:
    mirrored = {"destination": "batch", "status": "mirrored", "profile": "c", "execution_id": "x"}
    skipped = {"destination": "batch", "status": "skipped", "reason": "no ref"}
    other = {"destination": "elsewhere", "status": "mirrored", "profile": "c", "execution_id": "y"}
    assert mirror.planned(result(mirrors=[other, mirrored])) == mirrored
    assert mirror.planned(result(mirrors=[skipped])) is None
    assert mirror.planned(result()) is None


@pytest.mark.parametrize("type_", list(DEFAULT_EVENT_NAMES))
@pytest.mark.parametrize("phone", [None, "+358401234567"])
def test_every_operation_passes_the_profile_update_validation(type_: str, phone: str | None) -> None:
    """What the mirroring hands over is what POST /v1/batch/profiles would accept (the dispatcher
    does not validate again), with every text at its longest."""
    long, now = "x" * 300, time.time()
    r = result(type_, phone=phone, email="jane@example.com", source_type=long, ref=long, external_id=long)
    r["occurred_at"] = mirror.batch_time(now - 60)  # dated: the event's time is checked too
    s = settings(batch_event_names={"unknown": "relay_unknown"})
    op = mirror.operation(r, "customer-42", s, now)
    assert "time" in op["events"][0]
    with mock.patch("relay.destinations.batch.models.get_settings", return_value=s):
        Operation.model_validate(op)
