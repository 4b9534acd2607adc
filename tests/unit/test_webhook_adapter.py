"""The Optimized.app event adapter: lenient parsing, normalised names, ids for id-less events."""

from __future__ import annotations

import pytest
from relay.results.adapters.optimized import content_id, normalise, split_events


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"type": "sms.delivered"}, "sms.delivered"),
        ({"event": "SMS_DELIVERED"}, "sms.delivered"),
        ({"type": "sms", "status": "failed"}, "sms.failed"),
        ({"event_type": "email.opened"}, "email.opened"),
        ({"type": "call.completed"}, "call.completed"),
        ({"channel": "voice", "status": "no-answer"}, "call.no_answer"),
        ({"type": "sms.reply"}, "sms.reply"),
        ({"type": "Opt-Out"}, "profile.opted_out"),
        ({"type": "profile.opted_out"}, "profile.opted_out"),
        ({"type": "something.new"}, "unknown"),
        ({}, "unknown"),
        ("not an object", "unknown"),
    ],
)
def test_event_names_are_normalised(event, expected: str) -> None:
    assert normalise(event).type == expected


def test_references_are_found_at_several_paths_and_the_raw_event_is_kept() -> None:
    event = {
        "id": "evt-1",
        "type": "sms.delivered",
        "timestamp": "2026-01-01 09:00:05",
        "data": {
            "profile": {"uuid": "p-1", "external_id": "crm-9", "phone_number": "+35840123456"},
            "batch_uuid": "b-1",
            "schedule": {"uuid": "s-1", "campaign": {"uuid": "c-1"}},
        },
    }
    result = normalise(event)
    assert result.event_id == "evt-1"
    assert result.occurred_at == "2026-01-01T09:00:05.000Z"
    assert (result.profile_uuid, result.external_id, result.phone) == ("p-1", "crm-9", "+35840123456")
    assert (result.batch_uuid, result.schedule_uuid, result.campaign_uuid) == ("b-1", "s-1", "c-1")
    assert result.raw == event


def test_epoch_timestamps_in_seconds_or_milliseconds() -> None:
    assert normalise({"timestamp": 1_767_258_005}).occurred_at == "2026-01-01T09:00:05.000Z"
    assert normalise({"timestamp": 1_767_258_005_000}).occurred_at == "2026-01-01T09:00:05.000Z"
    assert normalise({"timestamp": "garbage"}).occurred_at == "garbage"


def test_an_event_without_id_gets_a_stable_content_hash() -> None:
    a = {"type": "sms.delivered", "profile": {"uuid": "p"}}
    same_reordered = {"profile": {"uuid": "p"}, "type": "sms.delivered"}
    assert normalise(a).event_id == normalise(same_reordered).event_id == content_id(a)
    assert normalise(a).event_id.startswith("sha256:")
    assert normalise({**a, "type": "sms.failed"}).event_id != normalise(a).event_id


def test_bodies_hold_one_event_an_array_or_an_events_envelope() -> None:
    assert split_events({"type": "x"}) == [{"type": "x"}]
    assert split_events([{"type": "x"}, {"type": "y"}]) == [{"type": "x"}, {"type": "y"}]
    assert split_events({"events": [{"type": "x"}]}) == [{"type": "x"}]
    # An event whose "data" is a list is still one event.
    assert split_events({"type": "x", "data": [1]}) == [{"type": "x", "data": [1]}]
