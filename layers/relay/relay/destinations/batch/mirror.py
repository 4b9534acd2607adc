"""Optimized.app results mirrored onto Batch.com profiles (BATCH_MIRROR_RESULTS=true).

Each result linked to the input profile that caused it becomes one profile-update operation: an
event (its name per result type, BATCH_EVENT_NAMES) on the profile whose custom id is that input
profile's ``ref`` or one of its attributes (BATCH_CUSTOM_ID_FROM), carrying the result's fields
as event attributes; an opt-out also sets ``$sms_marketing`` / ``$email_marketing`` to
``"unsubscribed"``. The plan (:func:`plan`) is made when the result is recorded and stored with
it, so whether and where a result is mirrored is visible on the result itself; a result whose
input profile has no custom id is planned as ``skipped`` with the reason (listed by
``GET /v1/results?mirror=skipped`` and counted on its execution).

The operation is then handed to the profile-update path (:func:`mirror`) as an execution of its
own whose id is derived from the result's event id: a redelivered message, a crash before the
hand-over or an operator's re-drive hands it over again and Batch still gets it once. The
dispatcher packs the operations of many results into calls of at most 200 under the updates
limiter, and maps partial errors back to the result's event id (the execution's ``ref``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from relay.destinations.batch import NAME
from relay.destinations.batch.settings import BatchSettings
from relay.executions.models import ResultMirror
from relay.executions.registry import Emit

logger = Logger(child=True)

DESTINATION = NAME
ORIGIN = "results"  # the origin of the executions mirroring results (the execution view shows it)
OPTED_OUT = "profile.opted_out"
UNSUBSCRIBED = "unsubscribed"
# The opt-out's channel -> the native attribute of its subscription. An opt-out that names no
# channel unsubscribes both: a missed opt-out is a compliance problem, an extra one is not.
SUBSCRIPTION_OF_CHANNEL = {"phone": "$sms_marketing", "email": "$email_marketing"}

# Mirror executions get ids derived from the result's event id (uuid5 in this namespace): the same
# result always maps to the same execution, which the profile-update path creates once.
MIRROR_NAMESPACE = uuid.UUID("6f0d7c1e-3b51-4f0e-9a52-6d1f1e3a9b07")

# The result's fields carried as event attributes (names within BATCH_ATTRIBUTE_NAME_PATTERN's
# default, [a-z0-9_] up to 30 characters; with result_type, profile_index and occurred_at these are
# 14, under the 15 attributes an event Batch's event APIs document).
TEXT_FIELDS = (
    "event_id",
    "source_type",
    "execution_id",
    "ref",
    "campaign_uuid",
    "schedule_uuid",
    "batch_uuid",
    "profile_uuid",
    "external_id",
    "phone",
    "email",
)


def execution_id_of(event_id: str) -> str:
    return str(uuid.uuid5(MIRROR_NAMESPACE, event_id))


def plan(result: dict[str, Any], profile_attributes: dict[str, Any], s: BatchSettings) -> ResultMirror | None:
    """How a result is mirrored (no I/O): None when it is not (mirroring off, a result that matched
    no execution has no input profile, a type without an event that is no opt-out)."""
    if not s.batch_mirror_results or not result.get("execution_id"):
        return None
    if s.event_names().get(result.get("type") or "") is None and result.get("type") != OPTED_OUT:
        return None
    custom_id, reason = custom_id_of(result, profile_attributes, s)
    if custom_id is None:
        return ResultMirror(destination=DESTINATION, status="skipped", reason=reason)
    return ResultMirror(
        destination=DESTINATION,
        status="mirrored",
        profile=custom_id,
        execution_id=execution_id_of(result["event_id"]),
    )


def custom_id_of(
    result: dict[str, Any], profile_attributes: dict[str, Any], s: BatchSettings
) -> tuple[str | None, str | None]:
    """(the Batch custom id, None) or (None, why there is none)."""
    attribute = s.custom_id_attribute()
    if attribute is None:
        value, source = result.get("ref"), "ref"
    else:
        value, source = profile_attributes.get(attribute), f"attribute {attribute!r}"
    setting = f"BATCH_CUSTOM_ID_FROM={s.batch_custom_id_from}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        if value is None:
            return None, f"the input profile has no {source} ({setting})"
        return (
            None,
            f"the input profile's {source} is a {type(value).__name__}, not a text or a number ({setting})",
        )
    text = str(value).strip()
    if not text:
        return None, f"the input profile's {source} is empty ({setting})"
    if len(text) > s.batch_max_custom_id_length:
        return None, (
            f"the input profile's {source} has {len(text)} characters; a custom id has at most "
            f"{s.batch_max_custom_id_length} (BATCH_MAX_CUSTOM_ID_LENGTH)"
        )
    return text, None


def operation(result: dict[str, Any], custom_id: str, s: BatchSettings, now: float) -> dict[str, Any]:
    """The /profiles/update operation of a result planned as mirrored."""
    op: dict[str, Any] = {"identifiers": {"custom_id": custom_id}}
    name = s.event_names().get(result.get("type") or "")
    if name is not None:
        op["events"] = [event(result, name, s, now)]
    if result.get("type") == OPTED_OUT:
        op["attributes"] = unsubscribed(result)
    return op


def unsubscribed(result: dict[str, Any]) -> dict[str, str]:
    """The subscriptions an opt-out ends: its channel's (phone -> SMS, email -> email), or both."""
    channels = [c for c in SUBSCRIPTION_OF_CHANNEL if result.get(c)] or list(SUBSCRIPTION_OF_CHANNEL)
    return {SUBSCRIPTION_OF_CHANNEL[c]: UNSUBSCRIBED for c in channels}


def event(result: dict[str, Any], name: str, s: BatchSettings, now: float) -> dict[str, Any]:
    """The Batch event: dated when the result happened if Batch takes that date (within the
    allowed age, not in the future); otherwise Batch dates it on arrival, and ``occurred_at``
    still says when it happened."""
    out: dict[str, Any] = {"name": name, "attributes": event_attributes(result, s)}
    occurred = parse_time(result.get("occurred_at"))
    if occurred is not None and now - s.batch_event_max_age_s < occurred <= now:
        out["time"] = batch_time(occurred)
    return out


def event_attributes(result: dict[str, Any], s: BatchSettings) -> dict[str, Any]:
    attributes: dict[str, Any] = {"result_type": result.get("type")}
    attributes |= {name: result.get(name) for name in TEXT_FIELDS}
    if isinstance(result.get("profile_index"), int):
        attributes["profile_index"] = result["profile_index"]
    # As text (ISO 8601, UTC): valid whichever way Batch types dates (a date(...) key or value).
    occurred = parse_time(result.get("occurred_at"))
    if occurred is not None:
        attributes["occurred_at"] = batch_time(occurred)
    # Texts are cut to the longest Batch takes (BATCH_MAX_TEXT_LENGTH); absent fields are left out.
    return {
        key: value[: s.batch_max_text_length] if isinstance(value, str) else value
        for key, value in attributes.items()
        if value not in (None, "")
    }


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def batch_time(ts: float) -> str:
    """ISO 8601 UTC to the second, as Batch's examples write dates."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def planned(result: dict[str, Any]) -> dict[str, Any] | None:
    """This destination's stored plan of a recorded result, if it is to be mirrored."""
    for mirror in result.get("mirrors") or []:
        if mirror.get("destination") == DESTINATION and mirror.get("status") == "mirrored":
            return mirror
    return None


def mirror(results: list[dict[str, Any]], s: BatchSettings, now: float, emit: Emit) -> int:
    """Hand each planned result's operation to the profile-update path, once per result (its
    execution id is the result's): how many were handed over."""
    from relay.destinations.batch.accept import accept_operations

    handed = 0
    for result in results:
        stored = planned(result)
        if stored is None or not stored.get("profile") or not stored.get("execution_id"):
            continue
        answer = accept_operations(
            [operation(result, stored["profile"], s, now)],
            execution_id=stored["execution_id"],
            origin=ORIGIN,
            refs=[result["event_id"]],
        )
        handed += 1
        logger.info(
            "result handed to the Batch profile updates",
            extra={
                "event_id": result["event_id"],
                "execution_id": answer["execution_id"],
                "status": answer["status"],
            },
        )
    # Hand-overs: a redelivery hands a result over again (a no-op: its execution exists).
    emit("BatchResultsMirrored", handed)
    return handed
