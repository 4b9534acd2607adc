"""What the `relay` command prints: rich tables and progress bars on a terminal, JSON on request.
Results go to stdout; progress bars and errors to stderr (so ``--json`` output stays clean)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from relay_ops.triggers import ImportReport


# Piped or captured output is not cut to 80 columns (ids would fold over lines).
_WIDE = 180


def out() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else _WIDE)


def err() -> Console:
    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else _WIDE)


def say(text: str) -> None:
    out().print(escape(text), soft_wrap=True)


def json_out(value: Any) -> None:
    out().print(json.dumps(value, indent=2), markup=False, soft_wrap=True)


def error(*lines: str) -> None:
    console = err()
    console.print(f"[bold red]error:[/] {escape(lines[0])}")
    for line in lines[1:]:
        console.print(escape(line))


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


# --- imports --------------------------------------------------------------------------------------


@contextmanager
def import_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err(),
    )
    with progress:
        task = progress.add_task(escape(description), total=total)
        yield lambda rows: progress.advance(task, rows)


def import_report(report: ImportReport, as_json: bool) -> int:
    """The summary; returns the exit code (0: every row accepted)."""
    if as_json:
        json_out(
            {
                "kind": report.kind,
                "file": report.file,
                "rows": report.rows,
                "chunks": report.chunks,
                "accepted_rows": report.accepted_rows,
                "executions": report.executions,
                "refused": [vars(r) for r in report.refused],
                "stopped": report.stopped,
            }
        )
    else:
        console = out()
        table = _table(f"{report.kind}: {report.file}", "rows", "execution", "status")
        shown = (
            report.executions
            if len(report.executions) <= 20
            else report.executions[:10] + report.executions[-10:]
        )
        for entry in shown:
            table.add_row(entry["rows"], str(entry.get("execution_id")), str(entry.get("status")))
        if len(shown) < len(report.executions):
            table.caption = f"({len(report.executions) - len(shown)} more not shown; --json lists all)"
        if report.executions:
            console.print(table)
        for refused in report.refused:
            console.print(
                f"[red]refused[/] rows {refused.rows}: {escape(refused.message)} ({refused.status})"
            )
            for detail in refused.details:
                console.print(f"  {escape(detail)}")
        console.print(
            f"{report.accepted_rows} of {report.rows} rows accepted in {len(report.executions)} trigger(s)"
            + (f", {len(report.refused)} refused" if report.refused else "")
        )
        if report.executions:
            console.print(f"Follow one: relay watch {report.executions[-1]['execution_id']}")
    if report.stopped:
        error(
            f"stopped at {report.stopped}",
            "Run the same command again to resume: what was accepted is not sent twice.",
        )
    return 0 if report.ok else 1


# --- executions -----------------------------------------------------------------------------------


def _counts(counts: dict[str, Any] | None, skip: tuple[str, ...] = ("total",)) -> str:
    return ", ".join(f"{k} {v}" for k, v in (counts or {}).items() if v and k not in skip) or "-"


def _eta(view: dict[str, Any]) -> str:
    done_at = view.get("estimated_dispatch_done_at")
    if not done_at:
        return ""
    try:
        when = datetime.fromisoformat(str(done_at).replace("Z", "+00:00"))
    except ValueError:
        return ""
    left = (when - datetime.now(UTC)).total_seconds()
    return f"ETA {max(0, round(left))}s ({done_at})" if left > 0 else f"due {done_at}"


def _progress_text(view: dict[str, Any]) -> str:
    chunks = view.get("chunks") or {}
    parts = [
        f"{name} {chunks.get(name, 0)}"
        for name in ("pending", "sent", "failed", "ambiguous")
        if name in chunks
    ]
    results = _counts(view.get("results"), skip=())
    text = " · ".join(parts) + (f" · results: {results}" if results != "-" else "")
    return " · ".join(p for p in (text, _eta(view)) if p)


@contextmanager
def watch_progress(execution_id: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err(),
    )
    with progress:
        task = progress.add_task(execution_id, total=None, detail="")

        def update(view: dict[str, Any]) -> None:
            chunks = view.get("chunks") or {}
            total = int(chunks.get("total") or 0)
            progress.update(
                task,
                description=escape(f"{execution_id[:12]} {view.get('status')}"),
                total=total or None,
                completed=total - int(chunks.get("pending") or 0) if total else 0,
                detail=escape(_progress_text(view)),
            )

        yield update


def watch_summary(view: dict[str, Any]) -> None:
    console = out()
    console.print(
        f"{escape(view['execution_id'])}: [bold]{escape(str(view.get('status')))}[/]"
        f" · chunks: {escape(_counts(view.get('chunks')))}"
        f" · profiles: {escape(_counts(view.get('profiles')))}"
        f" · results: {escape(_counts(view.get('results'), skip=()))}"
    )


def executions(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        json_out(items)
        return
    table = _table(
        "executions, newest first", "execution", "destination", "status", "created", "sent/total", "pending"
    )
    for view in items:
        profiles, chunks = view.get("profiles") or {}, view.get("chunks") or {}
        table.add_row(
            view["execution_id"],
            view.get("destination", ""),
            view.get("status", ""),
            view.get("created_at", ""),
            f"{profiles.get('sent', 0)}/{profiles.get('total', 0)}" if profiles.get("total") else "-",
            str(chunks.get("pending", 0)) if chunks.get("total") else "-",
        )
    out().print(table)
    out().print(f"{len(items)} execution(s)")


def execution(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        json_out(view)
        return
    console = out()
    facts = _table(f"execution {view['execution_id']}", "", "")
    facts.show_header = False
    for name in (
        "destination",
        "status",
        "group_id",
        "created_at",
        "updated_at",
        "first_sent_at",
        "last_sent_at",
    ):
        if view.get(name):
            facts.add_row(name, str(view[name]))
    if view.get("estimated_dispatch_done_at"):
        facts.add_row("estimated_dispatch_done_at", f"{view['estimated_dispatch_done_at']} {_eta(view)}")
    for name in ("profiles", "chunks", "results"):
        if view.get(name):
            facts.add_row(
                name,
                _counts(view[name], skip=() if name == "results" else ("total",))
                + (f" (of {view[name]['total']})" if view[name].get("total") else ""),
            )
    for name, value in (view.get("schedule") or {}).items():
        facts.add_row(f"schedule.{name}", str(value))
    # A destination's own part of the view (its upstream ids and outcome), whatever it is called.
    for part, values in view.items():
        if isinstance(values, dict) and part not in ("profiles", "chunks", "results", "schedule"):
            for name, value in values.items():
                if value not in (None, "", 0):
                    facts.add_row(f"{part}.{name}", str(value))
    for warning in view.get("warnings") or []:
        facts.add_row("warning", warning)
    console.print(facts)
    chunk_details = view.get("chunk_details") or []
    if chunk_details:
        chunks = _table("chunks", "seq", "profiles", "status", "batch_uuid", "sent_at", "attempts", "error")
        for chunk in chunk_details[:50]:
            chunks.add_row(
                str(chunk.get("seq")),
                str(chunk.get("profiles")),
                chunk.get("status", ""),
                chunk.get("batch_uuid") or "",
                chunk.get("sent_at") or "",
                str(chunk.get("attempts", 0)),
                (chunk.get("error") or {}).get("message", ""),
            )
        if len(chunk_details) > 50:
            chunks.caption = f"({len(chunk_details) - 50} more; --json shows all)"
        console.print(chunks)
    transitions = view.get("transitions") or []
    if transitions:
        steps = _table("transitions", "at", "status", "note")
        for step in transitions:
            steps.add_row(step.get("at", ""), step.get("status", ""), step.get("note") or "")
        console.print(steps)


def schedules(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        json_out(items)
        return
    table = _table("scheduled, soonest first", "run_at", "execution", "destination", "status", "details")
    for item in items:
        details = ", ".join(f"{k}={v}" for k, v in (item.get("details") or {}).items())
        table.add_row(item["run_at"], item["execution_id"], item["destination"], item["status"], details)
    out().print(table)
    out().print(f"{len(items)} scheduled")


def status(answer: dict[str, Any], source: str, as_json: bool) -> None:
    if as_json:
        json_out(answer)
        return
    console = out()
    console.print(f"relay at {escape(source)}, {answer.get('at')}")
    for destination in answer.get("destinations", []):
        name = destination["destination"]
        waiting = destination.get("waiting") or []
        if waiting:
            table = _table(f"{name}: waiting", "what", "under", "count")
            for entry in waiting:
                table.add_row(entry["what"], entry.get("key") or "", str(entry["count"]))
            console.print(table)
        else:
            console.print(f"{name}: nothing waiting")
        limiters = destination.get("limiters") or []
        if limiters:
            table = _table(f"{name}: limits", "limiter", "used", "booked ahead", "window", "next slot in")
            for limiter in limiters:
                table.add_row(
                    limiter["name"],
                    f"{limiter['used']}/{limiter['limit']}",
                    str(limiter.get("booked_ahead", 0)),
                    f"{limiter['window_s']:g}s",
                    f"{limiter['next_slot_in_s']:g}s",
                )
            console.print(table)
    queues = _table("queues", "queue", "visible", "in flight", "delayed")
    for queue in answer.get("queues", []):
        label = queue["queue"] + (" (dead letters)" if queue["dead_letter"] else "")
        queues.add_row(label, str(queue["visible"]), str(queue["in_flight"]), str(queue["delayed"]))
    console.print(queues)


def dead_letters(label: str, summaries: list[dict[str, Any]], as_json: bool) -> None:
    console = out()
    if as_json:
        for summary in summaries:
            console.print(json.dumps(summary), markup=False, soft_wrap=True)
    elif summaries:
        table = _table(
            f"{label} dead letters", "kind", "destination", "execution", "receives", "first sent", "why"
        )
        for s in summaries:
            table.add_row(
                str(s["kind"]),
                str(s["destination"] or ""),
                str(s["execution_id"] or ""),
                str(s["receive_count"] or ""),
                str(s["first_sent_at"] or ""),
                str(s["why"]),
            )
        console.print(table)
    console.print(f"{label}: {len(summaries)} message(s)", markup=False)
