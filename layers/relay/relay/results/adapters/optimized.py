"""Optimized.app webhook events -> ResultEvent. The adapter for a format that is NOT public.

Everything assumed about the platform's event names and fields is in the tables below, so the
real format can be adopted by editing them. Parsing is lenient: a field is looked for at several
paths, at the top of the event and under ``data``/``payload``; a name we do not know becomes
``unknown`` (kept, counted, forwarded), never an error.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from relay.results.models import ResultEvent

# The platform's event name (lower-cased, separators folded to ".") -> our type.
EVENT_NAMES: dict[str, str] = {
    **dict.fromkeys(
        ["sms.delivered", "sms.delivery", "message.delivered", "sms.sent.delivered"], "sms.delivered"
    ),
    **dict.fromkeys(["sms.failed", "sms.undelivered", "sms.delivery.failed", "message.failed"], "sms.failed"),
    **dict.fromkeys(
        ["sms.reply", "sms.replied", "sms.received", "sms.inbound", "message.reply"], "sms.reply"
    ),
    **dict.fromkeys(["email.delivered", "email.delivery"], "email.delivered"),
    **dict.fromkeys(["email.opened", "email.open", "email.opens"], "email.opened"),
    **dict.fromkeys(["email.bounced", "email.bounce", "email.failed"], "email.bounced"),
    **dict.fromkeys(
        ["call.completed", "call.answered", "voice.completed", "voice.answered", "call.complete"],
        "call.completed",
    ),
    **dict.fromkeys(
        ["call.no.answer", "call.noanswer", "call.unanswered", "voice.no.answer", "call.busy"],
        "call.no_answer",
    ),
    **dict.fromkeys(["call.failed", "voice.failed"], "call.failed"),
    **dict.fromkeys(
        [
            "profile.opted.out",
            "opt.out",
            "optout",
            "opted.out",
            "profile.optout",
            "unsubscribe",
            "unsubscribed",
        ],
        "profile.opted_out",
    ),
}
# Channel aliases for events given as {"channel"/"type": "sms", "status": "delivered"}.
CHANNELS = {"sms": "sms", "text": "sms", "email": "email", "mail": "email", "call": "call", "voice": "call"}

# Our field -> paths tried in order (dots walk into objects).
FIELDS: dict[str, tuple[str, ...]] = {
    "event_id": ("event_id", "id", "event_uuid", "uuid"),
    "type": ("type", "event", "event_type", "name", "topic"),
    "status": ("status", "state"),
    "channel": ("channel", "module", "module_type"),
    "occurred_at": ("occurred_at", "timestamp", "created_at", "event_time", "time", "date"),
    "profile_uuid": ("profile.uuid", "profile_uuid", "profile_id", "profile.id"),
    "external_id": ("profile.external_id", "external_id"),
    "batch_uuid": ("batch.uuid", "batch_uuid", "batch_id"),
    "schedule_uuid": ("schedule.uuid", "schedule_uuid", "schedule_id"),
    "campaign_uuid": ("campaign.uuid", "campaign_uuid", "campaign_id", "schedule.campaign.uuid"),
    "phone": ("phone_number", "phone", "to", "msisdn", "profile.phone_number", "profile.person.phone_number"),
    "email": ("email", "email_address", "profile.email", "profile.person.email"),
}
# Where an event may nest its fields.
ENVELOPES = ("data", "payload", "object")
# A request body is one event, a JSON array of events, or an object holding them under one of these.
BATCH_KEYS = ("events", "data", "items")

_SEPARATORS = re.compile(r"[\s_\-/:]+")


def split_events(payload: Any) -> list[Any]:
    """A request body -> its events."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        for key in BATCH_KEYS:
            inner = payload.get(key)
            # {"events": [...]} (+ maybe a meta field), but not an event that has a list under "data"
            if (
                isinstance(inner, list)
                and len(payload) <= 2
                and not any(k in payload for k in FIELDS["type"])
            ):
                return inner
    return [payload]


def normalise(event: Any) -> ResultEvent:
    scopes = [event] if isinstance(event, dict) else []
    scopes += [event[k] for k in ENVELOPES if isinstance(event, dict) and isinstance(event.get(k), dict)]

    def find(name: str) -> Any:
        for scope in scopes:
            for path in FIELDS[name]:
                value = _walk(scope, path)
                if value not in (None, "", [], {}):
                    return value
        return None

    source_type = _text(find("type"))
    event_id = _text(find("event_id")) or content_id(event)
    return ResultEvent(
        event_id=event_id[:256],
        type=event_type(source_type, _text(find("status")), _text(find("channel"))),  # type: ignore[arg-type]
        source_type=source_type,
        occurred_at=_timestamp(find("occurred_at")),
        profile_uuid=_text(find("profile_uuid")),
        external_id=_text(find("external_id")),
        batch_uuid=_text(find("batch_uuid")),
        schedule_uuid=_text(find("schedule_uuid")),
        campaign_uuid=_text(find("campaign_uuid")),
        phone=_text(find("phone")),
        email=_text(find("email")),
        raw=event,
    )


def event_type(name: str | None, status: str | None, channel: str | None) -> str:
    folded = _fold(name)
    if folded in EVENT_NAMES:
        return EVENT_NAMES[folded]
    # {"type": "sms", "status": "delivered"} or {"channel": "voice", "event": "no_answer"}
    channel_name = CHANNELS.get(folded or "") or CHANNELS.get(_fold(channel) or "")
    detail = _fold(status) if folded is None or folded in CHANNELS else folded
    if channel_name and detail:
        return EVENT_NAMES.get(f"{channel_name}.{detail}", "unknown")
    return "unknown"


def content_id(event: Any) -> str:
    """An id for an event that has none: a redelivery of the same content gets the same id."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _fold(value: str | None) -> str | None:
    return _SEPARATORS.sub(".", value.strip().lower()).strip(".") if value else None


def _walk(scope: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(scope, dict):
            return None
        scope = scope.get(part)
    return scope


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:512]


def _timestamp(value: Any) -> str | None:
    """Epoch seconds/milliseconds or an ISO/"YYYY-MM-DD HH:MM:SS" (UTC) string -> ISO 8601 UTC."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            seconds = value / 1000 if value > 1e11 else value
            moment = datetime.fromtimestamp(seconds, UTC)
        else:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # the platform's datetimes are UTC
        # Inside the try: 0001-01-01T00:00:00+01:00 parses, but is before year 1 in UTC.
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return _text(value)
