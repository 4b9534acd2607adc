"""``POST /v1/batch/profiles``: operations in the shape of Batch's ``/profiles/update`` (plus the
caller's ``ref``), validated before anything is stored, each error naming its field
(``operations[12].identifiers``).

Documented rules (doc.batch.com): exactly one identifier (``custom_id`` or ``installation``);
native attributes start with ``$`` and are the known ones, ``$email_marketing``/``$sms_marketing``
take ``"subscribed"``/``"unsubscribed"``; typed values ``date(<ISO 8601>)`` and ``url(<URL>)``;
``{"$add": [...]}`` appends to an array; ``null`` deletes; event attributes may carry ``$label``
and ``$tags``. Unverified rules are settings with the value seen in Batch's SDKs as the default:
the event and attribute name patterns (run with RE2), text length, events per profile, event age,
custom id length.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator, model_validator

from relay.core.models import E164, EMAIL, Model, RequestModel
from relay.core.safe_schema import compile_pattern
from relay.destinations.batch.settings import get_settings

SUBSCRIPTION = ("subscribed", "unsubscribed")
# An event dated this far ahead of our clock is still "now" (clock skew between systems).
FUTURE_SKEW_S = 60.0


def _subscription(value: Any) -> None:
    if value not in SUBSCRIPTION:
        raise ValueError('must be "subscribed" or "unsubscribed" (or null to delete)')


def _email(value: Any) -> None:
    if not isinstance(value, str) or not EMAIL.match(value) or len(value) > 320:
        raise ValueError("must be an email address")


def _phone(value: Any) -> None:
    if not isinstance(value, str) or not E164.match(value):
        raise ValueError("must be an E.164 phone number such as +33612345678")


def _language(value: Any) -> None:
    if not isinstance(value, str) or not 2 <= len(value) <= 5:
        raise ValueError("must be a language code such as fr or en")


def _region(value: Any) -> None:
    if not isinstance(value, str) or not 2 <= len(value) <= 3:
        raise ValueError("must be a region code such as FR or US")


def _timezone(value: Any) -> None:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as Europe/Paris") from None


# Batch's native profile attributes and what each takes (a null deletes any of them).
NATIVE = {
    "$email_address": _email,
    "$phone_number": _phone,
    "$email_marketing": _subscription,
    "$sms_marketing": _subscription,
    "$language": _language,
    "$region": _region,
    "$timezone": _timezone,
}


def _matches(pattern: str, value: str) -> bool:
    return compile_pattern(pattern).search(value) is not None


def check_name(name: str, *, what: str = "attribute") -> None:
    pattern = get_settings().batch_attribute_name_pattern
    if not _matches(pattern, name):
        raise ValueError(f"{what} name {name!r} must match {pattern} (BATCH_ATTRIBUTE_NAME_PATTERN)")


def check_text(value: str) -> None:
    limit = get_settings().batch_max_text_length
    if not 1 <= len(value) <= limit:
        raise ValueError(
            f"a text value is 1 to {limit} characters (BATCH_MAX_TEXT_LENGTH); this one is {len(value)}"
        )
    if value.startswith("date(") and value.endswith(")"):
        try:
            datetime.fromisoformat(value[5:-1].replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r}: date(...) takes an ISO 8601 date-time") from None
    elif value.startswith("url(") and value.endswith(")"):
        url = urlsplit(value[4:-1])
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"{value!r}: url(...) takes an absolute http(s) URL")


def check_value(value: Any, *, in_event: bool, depth: int = 0) -> None:
    """A custom attribute's value: text (typed ``date(...)``/``url(...)`` included), number,
    boolean, array of texts, ``{"$add": [texts]}`` on a profile, objects in events; null deletes."""
    if value is None or isinstance(value, bool | int | float):
        return
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, list):
        for item in value:
            if in_event and isinstance(item, dict) and depth < 2:
                check_object(item, depth + 1)
            elif isinstance(item, str):
                check_text(item)
            else:
                raise ValueError("an array holds texts" + (" or objects" if in_event else ""))
    elif isinstance(value, dict) and not in_event:
        if set(value) != {"$add"} or not isinstance(value["$add"], list) or not value["$add"]:
            raise ValueError('an object value on a profile is {"$add": [texts]} (appends to an array)')
        for item in value["$add"]:
            if not isinstance(item, str):
                raise ValueError('"$add" takes texts')
            check_text(item)
    elif isinstance(value, dict) and depth < 2:
        check_object(value, depth + 1)
    else:
        raise ValueError(f"a value of type {type(value).__name__} is not accepted here")


def check_object(value: dict[str, Any], depth: int) -> None:
    for name, item in value.items():
        check_name(name)
        check_value(item, in_event=True, depth=depth)


class Identifiers(Model):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    custom_id: str | None = Field(None, min_length=1)
    installation: str | None = Field(None, min_length=1, max_length=128)

    @field_validator("custom_id")
    @classmethod
    def _custom_id_length(cls, value: str | None) -> str | None:
        limit = get_settings().batch_max_custom_id_length
        if value is not None and len(value) > limit:
            raise ValueError(f"a custom_id is at most {limit} characters (BATCH_MAX_CUSTOM_ID_LENGTH)")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Identifiers:
        if (self.custom_id is None) == (self.installation is None):
            raise ValueError("exactly one of custom_id or installation is required")
        return self


class Event(Model):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str = Field(description="Matches BATCH_EVENT_NAME_PATTERN")
    time: datetime | None = Field(None, description="ISO 8601; within BATCH_EVENT_MAX_AGE_S, never ahead")
    attributes: dict[str, Any] | None = Field(None, description="May carry $label (text) and $tags (texts)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        pattern = get_settings().batch_event_name_pattern
        if not _matches(pattern, value):
            raise ValueError(f"event name {value!r} must match {pattern} (BATCH_EVENT_NAME_PATTERN)")
        return value

    @field_validator("time")
    @classmethod
    def _recent(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        try:
            at = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        except (OverflowError, ValueError, OSError):
            raise ValueError("an event time must be a date-time within the last day") from None
        now, max_age = time.time(), get_settings().batch_event_max_age_s
        if at > now + FUTURE_SKEW_S:
            raise ValueError("an event cannot be dated in the future")
        if at < now - max_age:
            raise ValueError(f"an event must be dated within the last {max_age} s (BATCH_EVENT_MAX_AGE_S)")
        return value

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for name, item in (value or {}).items():
            if name == "$label":
                if not isinstance(item, str):
                    raise ValueError("$label is a text")
                check_text(item)
            elif name == "$tags":
                if not isinstance(item, list) or not all(isinstance(t, str) for t in item):
                    raise ValueError("$tags is an array of texts")
                for tag in item:
                    check_text(tag)
            else:
                check_name(name, what="event attribute")
                try:
                    check_value(item, in_event=True)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return value

    def upstream(self) -> dict[str, Any]:
        event: dict[str, Any] = {"name": self.name}
        if self.time is not None:
            at = self.time if self.time.tzinfo else self.time.replace(tzinfo=UTC)
            event["time"] = at.isoformat()
        if self.attributes is not None:
            event["attributes"] = self.attributes
        return event


class Operation(Model):
    """One operation of Batch's /profiles/update, plus the caller's ``ref``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    identifiers: Identifiers
    attributes: dict[str, Any] | None = None
    events: list[Event] | None = None
    ref: str | None = Field(None, max_length=256, description="Caller's own reference, shown with its errors")

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for name, item in (value or {}).items():
            if name.startswith("$"):
                check = NATIVE.get(name)
                if check is None:
                    raise ValueError(f"{name!r} is not a native attribute ({', '.join(NATIVE)})")
                if item is not None:
                    try:
                        check(item)
                    except ValueError as exc:
                        raise ValueError(f"{name}: {exc}") from None
                continue
            check_name(name)
            try:
                check_value(item, in_event=False)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value

    @field_validator("events")
    @classmethod
    def _few_enough(cls, value: list[Event] | None) -> list[Event] | None:
        limit = get_settings().batch_max_events_per_profile
        if value is not None and len(value) > limit:
            raise ValueError(f"at most {limit} events per profile per call (BATCH_MAX_EVENTS_PER_PROFILE)")
        return value

    def upstream(self) -> dict[str, Any]:
        """The operation as Batch takes it (no ref)."""
        operation: dict[str, Any] = {"identifiers": self.identifiers.model_dump(exclude_none=True)}
        if self.attributes is not None:
            operation["attributes"] = self.attributes  # as sent: a null deletes an attribute
        if self.events is not None:
            operation["events"] = [event.upstream() for event in self.events]
        return operation


class ProfilesRequest(RequestModel):
    """``POST /v1/batch/profiles``: any number of operations, packed into calls of at most 200."""

    operations: list[Operation] = Field(min_length=1)


class ProfilesAccepted(Model):
    execution_id: str
    status: str
    operations: int
    calls: int = Field(description="Calls of at most 200 operations this execution needs on its own")
