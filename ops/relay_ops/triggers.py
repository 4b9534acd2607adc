"""`relay trigger ...`: a file streamed to a trigger route chunk by chunk, with a progress bar.

Every chunk is one request with its deterministic Idempotency-Key (:mod:`relay_ops.imports`), so
running the same import again after an interruption sends nothing twice: what the relay accepted
before answers its first answer again (counted as ``already accepted`` when the answer says so),
the rest is sent now. A chunk the relay refuses (a bad phone number in one row) is reported with
its rows and the relay's message, and the import goes on with the next chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay_ops import imports, render
from relay_ops.api import RelayApi, RelayApiError

# Answers that no row of the file can change: the import stops at the first.
STOPPING_STATUSES = frozenset({401, 403, 404, 405})


@dataclass
class Refused:
    rows: str
    status: int
    message: str
    details: list[str]


@dataclass
class ImportReport:
    kind: str
    file: str
    rows: int = 0
    chunks: int = 0
    accepted_rows: int = 0
    executions: list[dict[str, Any]] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    stopped: str | None = None  # why the import stopped before the end (the relay unreachable, ...)

    @property
    def ok(self) -> bool:
        return not self.refused and self.stopped is None


def _run(
    api: RelayApi,
    report: ImportReport,
    path: Path,
    route: str,
    chunks: Iterator[imports.Chunk],
    body_of: Callable[[imports.Chunk], dict[str, Any]],
    total_rows: int,
    answer_of: Callable[[dict[str, Any]], dict[str, Any]],
    attempts: int,
) -> ImportReport:
    with render.import_progress(f"{report.kind} {path.name}", total_rows) as advance:
        try:
            for chunk in chunks:
                if not _send(api, report, route, chunk, body_of, answer_of, attempts):
                    break
                advance(chunk.last_row - chunk.first_row + 1)
        except KeyboardInterrupt:
            report.stopped = f"row {report.rows + 1}: interrupted"
    return report


def _send(
    api: RelayApi,
    report: ImportReport,
    route: str,
    chunk: imports.Chunk,
    body_of: Callable[[imports.Chunk], dict[str, Any]],
    answer_of: Callable[[dict[str, Any]], dict[str, Any]],
    attempts: int,
) -> bool:
    """One chunk; False: the import stops here (a re-run resumes at this chunk)."""
    report.chunks += 1
    rows = chunk.last_row - chunk.first_row + 1
    try:
        answer = api.post_keyed(route, body_of(chunk), chunk.key, attempts=attempts)
    except RelayApiError as error:
        # Retried and still unavailable, or refused whatever the rows (a wrong key, a route this
        # relay does not have): stop.
        if error.retryable or error.status in STOPPING_STATUSES:
            report.stopped = f"rows {chunk.rows}: {error.message}"
            return False
        report.refused.append(
            Refused(
                chunk.rows,
                error.status,
                error.message,
                [f"{imports.row_of(d.get('field'), chunk)}: {d.get('message')}" for d in error.details],
            )
        )
    else:
        report.accepted_rows += rows
        report.executions.append({"rows": chunk.rows, "key": chunk.key, **answer_of(answer)})
    report.rows += rows
    return True


def optimized(
    api: RelayApi,
    path: Path,
    group: str,
    schedule: dict[str, Any] | None,
    chunk_size: int,
    attempts: int,
) -> ImportReport:
    digest = imports.file_digest(path)
    options = {"group_id": group, "schedule": schedule}
    prefix = imports.key_prefix("optimized", digest, options)
    total = imports.count_rows(path, jsonl=False)
    chunks = imports.chunks(imports.items(path, imports.optimized_profile), chunk_size, prefix)

    def body(chunk: imports.Chunk) -> dict[str, Any]:
        out: dict[str, Any] = {"group_id": group, "profiles": chunk.items}
        if schedule:
            out["schedule"] = schedule
        return out

    def answer(a: dict[str, Any]) -> dict[str, Any]:
        return {
            "execution_id": a.get("execution_id"),
            "status": a.get("status"),
            "profiles": a.get("profiles"),
            "estimated_dispatch_done_at": a.get("estimated_dispatch_done_at"),
        }

    report = ImportReport("optimized", str(path))
    return _run(api, report, path, "/v1/optimized/triggers", chunks, body, total, answer, attempts)


def optimove(api: RelayApi, path: Path, defaults: dict[str, Any], attempts: int) -> ImportReport:
    columns = imports.header(path)
    for field_name, option in (("event_generator_id", "--event-generator"), ("topic_key", "--topic")):
        if not defaults.get(field_name) and field_name not in columns:
            raise imports.ImportFileError(f"{path}: no {field_name} column: give {option}")
    digest = imports.file_digest(path)
    prefix = imports.key_prefix("optimove", digest, defaults)
    total = imports.count_rows(path, jsonl=False)
    triggers = imports.items(path, lambda row: imports.optimove_trigger(row, defaults))

    def answer(a: dict[str, Any]) -> dict[str, Any]:
        return {
            "execution_id": a.get("execution_id"),
            "status": a.get("status"),
            "duplicate": a.get("duplicate"),
            "send_at": a.get("send_at"),
        }

    report = ImportReport("optimove", str(path))
    chunks = imports.chunks(triggers, 1, prefix)
    return _run(
        api, report, path, "/v1/optimove/triggers", chunks, lambda c: c.items[0], total, answer, attempts
    )


def batch(api: RelayApi, path: Path, jsonl: bool, chunk_size: int, attempts: int) -> ImportReport:
    digest = imports.file_digest(path)
    prefix = imports.key_prefix("batch", digest, {"jsonl": jsonl})
    total = imports.count_rows(path, jsonl=jsonl)
    operations = imports.items(path, (lambda op: op) if jsonl else imports.batch_operation, jsonl=jsonl)

    def answer(a: dict[str, Any]) -> dict[str, Any]:
        return {
            "execution_id": a.get("execution_id"),
            "status": a.get("status"),
            "operations": a.get("operations"),
            "calls": a.get("calls"),
        }

    report = ImportReport("batch", str(path))
    chunks = imports.chunks(operations, chunk_size, prefix)
    return _run(
        api,
        report,
        path,
        "/v1/batch/profiles",
        chunks,
        lambda c: {"operations": c.items},
        total,
        answer,
        attempts,
    )
