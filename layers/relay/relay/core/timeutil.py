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


def to_utc(value: datetime, timezone: str | None) -> datetime:
    """A wall-clock time in an IANA zone to UTC, refusing times a DST change skips or repeats."""
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    if timezone is None:
        return value.replace(tzinfo=UTC)
    zone = ZoneInfo(timezone)
    early, late = value.replace(tzinfo=zone, fold=0), value.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        # Either the time happens twice (fall back) or not at all (spring forward).
        round_trip = early.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if round_trip != value:
            raise ValueError(f"start_at {value} does not exist in {timezone} (DST gap); give an offset")
        raise ValueError(f"start_at {value} is ambiguous in {timezone} (DST fold); give an offset")
    return early.astimezone(UTC)
