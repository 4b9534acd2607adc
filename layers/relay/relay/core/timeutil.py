"""Wall-clock times in IANA zones, converted to UTC correctly across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


IanaZone = Annotated[str, AfterValidator(_known_zone)]

# Times past this are refused: year 9999 in a negative offset is year 10000 in UTC, which Python's
# datetime cannot hold, and no campaign is planned that far ahead.
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def within_range(value: datetime) -> datetime:
    """``value`` (aware) if it lies before year 9000 UTC; else a ValueError saying so."""
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or in_utc >= LATEST:
        raise ValueError(f"{value.isoformat()} is too far ahead (the latest accepted is {LATEST.year - 1})")
    return in_utc


def to_utc(value: datetime, timezone: str | None) -> datetime:
    """A wall-clock time in an IANA zone to UTC, refusing times a DST change skips or repeats."""
    if value.tzinfo is not None:
        return within_range(value)
    if timezone is None:
        return within_range(value.replace(tzinfo=UTC))
    zone = ZoneInfo(timezone)
    early, late = value.replace(tzinfo=zone, fold=0), value.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        # Either the time happens twice (fall back) or not at all (spring forward).
        round_trip = early.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if round_trip != value:
            raise ValueError(f"start_at {value} does not exist in {timezone} (DST gap); give an offset")
        raise ValueError(f"start_at {value} is ambiguous in {timezone} (DST fold); give an offset")
    return within_range(early)
