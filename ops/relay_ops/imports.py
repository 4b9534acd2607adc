"""Files of any size into triggers: rows streamed, cut into chunks, each chunk one request with a
deterministic Idempotency-Key (the file's hash, the options' hash and the chunk's row range), so
an import that was interrupted and is run again sends nothing twice: a chunk the relay accepted
before answers its first answer again.

Rows are numbered from 1, the first row after a CSV's header (a JSONL file's first line)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERSON_COLUMNS = ("first_name", "last_name", "phone_number", "email_address")
REF_COLUMN = "ref"
# Optimove: these columns, when present, are the trigger's fields; every other one is context.
OPTIMOVE_COLUMNS = ("event_generator_id", "topic_key", "send_at", "timezone", "dedupe_key")
# Batch.com: a column per identifier of the operation; every other one is an attribute.
BATCH_IDENTIFIERS = ("custom_id", "installation")


class ImportFileError(Exception):
    """The file cannot be imported as it is (said as a sentence, with the row)."""


@dataclass(frozen=True)
class Chunk:
    first_row: int
    last_row: int
    items: list[dict[str, Any]]
    key: str

    @property
    def rows(self) -> str:
        return f"{self.first_row}-{self.last_row}" if self.last_row != self.first_row else str(self.first_row)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def options_digest(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()


def count_rows(path: Path, jsonl: bool) -> int:
    if jsonl:
        with path.open("rb") as stream:
            return sum(1 for line in stream if line.strip())
    return sum(1 for _ in _csv_rows(path))


def header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as stream:
        return [name.strip() for name in next(csv.reader(stream), [])]


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        if not reader.fieldnames:
            raise ImportFileError(f"{path}: no header row")
        for row in reader:
            if None in row:
                raise ImportFileError(f"{path}, row {reader.line_num - 1}: more fields than the header has")
            yield {name.strip(): (value or "").strip() for name, value in row.items() if name}


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        row = 0
        for line in stream:
            if not line.strip():
                continue
            row += 1
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise ImportFileError(f"{path}, row {row}: not JSON ({exc})") from None
            if not isinstance(value, dict):
                raise ImportFileError(f"{path}, row {row}: not a JSON object")
            yield value


# --- Rows into items ------------------------------------------------------------------------------


def optimized_profile(row: dict[str, str]) -> dict[str, Any]:
    """``first_name``, ``last_name``, ``phone_number``, ``email_address`` fill ``person``, ``ref``
    is the caller's ref, every other non-empty column an attribute."""
    profile: dict[str, Any] = {"person": {c: row[c] for c in PERSON_COLUMNS if row.get(c)}}
    attributes = [
        {"name": name, "value": value}
        for name, value in row.items()
        if name not in PERSON_COLUMNS and name != REF_COLUMN and value != ""
    ]
    if attributes:
        profile["attributes"] = attributes
    if row.get(REF_COLUMN):
        profile["ref"] = row[REF_COLUMN]
    return profile


def optimove_trigger(row: dict[str, str], defaults: dict[str, Any]) -> dict[str, Any]:
    """The trigger's fields from their columns (or the options), every other column the context."""
    trigger = {k: v for k, v in defaults.items() if v is not None}
    trigger.update({c: row[c] for c in OPTIMOVE_COLUMNS if row.get(c)})
    trigger["context"] = {name: value for name, value in row.items() if name not in OPTIMOVE_COLUMNS}
    return trigger


def batch_operation(row: dict[str, str]) -> dict[str, Any]:
    """``custom_id`` / ``installation`` are the identifiers, ``ref`` the caller's ref, every other
    non-empty column an attribute."""
    operation: dict[str, Any] = {"identifiers": {c: row[c] for c in BATCH_IDENTIFIERS if row.get(c)}}
    attributes = {
        name: value
        for name, value in row.items()
        if name not in BATCH_IDENTIFIERS and name != REF_COLUMN and value != ""
    }
    if attributes:
        operation["attributes"] = attributes
    if row.get(REF_COLUMN):
        operation["ref"] = row[REF_COLUMN]
    return operation


def items(
    path: Path, to_item: Callable[[dict[str, Any]], dict[str, Any]], *, jsonl: bool = False
) -> Iterator[dict[str, Any]]:
    rows = _jsonl_rows(path) if jsonl else _csv_rows(path)
    yield from (to_item(row) for row in rows)


def chunks(items: Iterator[dict[str, Any]], size: int, key_prefix: str) -> Iterator[Chunk]:
    """``size`` items a chunk, each keyed ``<prefix>-rows-<first>-<last>``."""
    if size < 1:
        raise ValueError("a chunk holds at least one row")
    batch: list[dict[str, Any]] = []
    first = 1
    for row, item in enumerate(items, start=1):
        batch.append(item)
        if len(batch) == size:
            yield Chunk(first, row, batch, f"{key_prefix}-rows-{first}-{row}")
            batch, first = [], row + 1
    if batch:
        last = first + len(batch) - 1
        yield Chunk(first, last, batch, f"{key_prefix}-rows-{first}-{last}")


def key_prefix(kind: str, file_hash: str, options: dict[str, Any]) -> str:
    """``relay-<kind>-<file hash>-<options hash>``: the same file with the same options (chunk
    size included, through the row ranges) gives the same keys; anything else, other keys."""
    return f"relay-{kind}-{file_hash[:32]}-{options_digest(options)[:12]}"


_ITEM_FIELD = re.compile(r"^(profiles|operations)\[(\d+)\]\.?")


def row_of(field: str | None, chunk: Chunk) -> str | None:
    """``profiles[3].person.phone_number`` in chunk rows 1001-2000 -> ``row 1004: person.phone_number``."""
    if not field:
        return None
    match = _ITEM_FIELD.match(field)
    if not match:
        return field
    rest = field[match.end() :]
    return f"row {chunk.first_row + int(match.group(2))}" + (f": {rest}" if rest else "")
