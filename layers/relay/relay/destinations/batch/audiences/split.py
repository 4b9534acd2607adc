"""Cutting one audience write into Batch calls, in order, and its ids into stored parts.

Pure functions. Calls: at most ``per_call`` ids each, in the caller's order, so the last action
per id still wins however the ids fall across calls (calls are made one after the other). A
replace's first call replaces; the calls after it add (Batch's /audiences/replace takes at most
10,000 ids). Parts: the ids as stored, cut by size (a DynamoDB item holds 400 KB), independent of
how they are cut into calls.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from typing import Any

# Bytes of JSON per stored part: well under DynamoDB's 400 KB item size with its keys.
PART_BYTES = 300_000

Entry = dict[str, Any]


def calls_needed(operation: str, ids: int, per_call: int) -> int:
    if operation in ("create", "remove"):
        return 1
    return max(1, math.ceil(ids / per_call))


def call_range(n: int, total_ids: int, per_call: int) -> tuple[int, int]:
    """The ids [start, end) of call ``n``."""
    return n * per_call, min(total_ids, (n + 1) * per_call)


def call_request(
    operation: str, name: str, n: int, entries: Sequence[Entry], *, display_name: str | None = None
) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of call ``n`` of a write, given that call's ids."""
    if operation == "create":
        body: dict[str, Any] = {"name": name, "type": "custom_ids"}
        if display_name:
            body["display_name"] = display_name
        return "/audiences/create", body
    if operation == "remove":
        return "/audiences/remove", {"name": name}
    if operation == "replace":
        if n == 0:
            return "/audiences/replace", {"name": name, "ids": [_member(e) for e in entries]}
        return "/audiences/update", {"name": name, "ids": [{"action": "add", **_member(e)} for e in entries]}
    if operation == "update":
        return "/audiences/update", {"name": name, "ids": [_change(e) for e in entries]}
    raise ValueError(f"unknown audience operation {operation!r}")


def _member(entry: Entry) -> Entry:
    member: Entry = {"id": entry["id"]}
    if entry.get("attributes") is not None:
        member["attributes"] = entry["attributes"]
    return member


def _change(entry: Entry) -> Entry:
    return {"action": entry["action"], **_member(entry)}


def calls(operation: str, name: str, entries: Sequence[Entry], per_call: int) -> list[tuple[str, dict]]:
    """Every call of a write, in order (tests and the sandbox's checks; the worker builds one at a
    time from the stored parts)."""
    count = calls_needed(operation, len(entries), per_call)
    out = []
    for n in range(count):
        start, end = call_range(n, len(entries), per_call)
        out.append(call_request(operation, name, n, entries[start:end]))
    return out


class EntryTooLarge(ValueError):
    def __init__(self, index: int, size: int) -> None:
        super().__init__(
            f"ids[{index}] is {size:,} bytes as JSON; an id with its attributes may be at most {PART_BYTES:,}"
        )
        self.index, self.size = index, size


def parts(entries: Sequence[Entry], max_bytes: int = PART_BYTES) -> list[tuple[int, str]]:
    """The ids cut into (first index, JSON list) parts of at most ``max_bytes`` each. An entry
    over PART_BYTES alone is EntryTooLarge (it could not be stored in one item)."""
    out: list[tuple[int, str]] = []
    start, current, size = 0, [], 2
    for index, entry in enumerate(entries):
        text = json.dumps(entry, separators=(",", ":"))
        if len(text) > PART_BYTES:
            raise EntryTooLarge(index, len(text))
        if current and size + len(text) + 1 > max_bytes:
            out.append((start, "[" + ",".join(current) + "]"))
            start, current, size = index, [], 2
        current.append(text)
        size += len(text) + 1
    if current:
        out.append((start, "[" + ",".join(current) + "]"))
    return out


def parts_for(part_starts: Sequence[int], start: int, end: int) -> list[int]:
    """The indexes of the parts holding ids [start, end)."""
    if end <= start:
        return []
    first = bisect.bisect_right(part_starts, start) - 1
    last = bisect.bisect_right(part_starts, end - 1) - 1
    return list(range(max(0, first), last + 1))


def slice_parts(loaded: Sequence[tuple[int, list[Entry]]], start: int, end: int) -> list[Entry]:
    """Ids [start, end) out of loaded (first index, entries) parts, in order."""
    out: list[Entry] = []
    for first, entries in sorted(loaded, key=lambda part: part[0]):
        low, high = max(start, first), min(end, first + len(entries))
        if low < high:
            out += entries[low - first : high - first]
    return out
