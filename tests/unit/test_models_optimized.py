"""relay.destinations.optimized.models: trigger validation and wall-clock conversion."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from relay.destinations.optimized.models import (
    BatchRequest,
    OptimizedTrigger,
    Schedule,
    ceil_to_second,
    to_utc,
    upstream_start_at,
)

GROUP = "cc6cdf44-acf4-4b39-bd17-55b70b769812"
CAMPAIGN = "9e679c93-ff33-4b1e-bfad-1ac77afe1aef"


def test_offset_is_exact() -> None:
    value = datetime(2030, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert to_utc(value, "America/New_York") == datetime(2030, 3, 1, 10, 0, tzinfo=UTC)


def test_naive_without_zone_is_utc() -> None:
    assert to_utc(datetime(2030, 3, 1, 12, 0), None) == datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


def test_naive_in_zone_uses_its_offset_summer_and_winter() -> None:
    assert to_utc(datetime(2030, 7, 1, 12, 0), "Europe/Helsinki") == datetime(2030, 7, 1, 9, 0, tzinfo=UTC)
    assert to_utc(datetime(2030, 1, 1, 12, 0), "Europe/Helsinki") == datetime(2030, 1, 1, 10, 0, tzinfo=UTC)


def test_dst_gap_is_refused() -> None:
    # 2030-03-31 03:30 does not exist in Helsinki (clocks jump 03:00 -> 04:00).
    with pytest.raises(ValueError, match="does not exist"):
        to_utc(datetime(2030, 3, 31, 3, 30), "Europe/Helsinki")


def test_dst_fold_is_refused() -> None:
    # 2030-10-27 03:30 happens twice in Helsinki (04:00 -> 03:00).
    with pytest.raises(ValueError, match="ambiguous"):
        to_utc(datetime(2030, 10, 27, 3, 30), "Europe/Helsinki")


def test_fold_with_offset_is_fine() -> None:
    value = datetime(2030, 10, 27, 3, 30, tzinfo=timezone(timedelta(hours=3)))
    assert to_utc(value, "Europe/Helsinki") == datetime(2030, 10, 27, 0, 30, tzinfo=UTC)


def _trigger(**schedule: object) -> OptimizedTrigger:
    return OptimizedTrigger.model_validate(
        {
            "group_id": GROUP,
            "profiles": [{"person": {"phone_number": "+35840123456"}}],
            "schedule": {"campaign_uuid": CAMPAIGN, **schedule},
        }
    )


def test_schedule_start_at_in_zone_becomes_utc() -> None:
    trigger = _trigger(start_at="2030-07-01T12:00:00", timezone="Europe/Helsinki")
    assert trigger.schedule is not None
    assert trigger.schedule.start_at == datetime(2030, 7, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ({"start_at": "2030-03-31T03:30:00", "timezone": "Europe/Helsinki"}, "DST gap"),
        ({"start_at": "2030-10-27T03:30:00", "timezone": "Europe/Helsinki"}, "DST fold"),
        ({"start_at": "2001-01-01T00:00:00Z"}, "in the past"),
        ({"timezone": "Nowhere/Land"}, "unknown IANA time zone"),
        ({"calls_per_minute": 0}, "greater than or equal to 1"),
        ({"calls_per_minute": 61}, "less than or equal to 60"),
    ],
)
def test_bad_schedules(schedule: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        _trigger(**schedule)


def test_start_at_within_clock_skew_is_accepted() -> None:
    just_now = datetime.fromtimestamp(time.time() - 2, UTC).isoformat()
    assert Schedule.model_validate({"campaign_uuid": CAMPAIGN, "start_at": just_now}).start_at is not None


def test_upstream_start_at_and_ceil() -> None:
    ts = datetime(2030, 1, 2, 3, 4, 5, 250_000, tzinfo=UTC).timestamp()
    assert upstream_start_at(ts) == "2030-01-02 03:04:05"
    assert upstream_start_at(ceil_to_second(ts)) == "2030-01-02 03:04:06"
    whole = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert ceil_to_second(whole) == whole


def test_batch_request_holds_at_most_50() -> None:
    BatchRequest(profiles=[{}] * 50)
    with pytest.raises(ValidationError):
        BatchRequest(profiles=[{}] * 51)
