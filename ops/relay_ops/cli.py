"""`relay`: the operator's command for a running relay (the local stack or a deployed stack).

    relay trigger optimized --csv profiles.csv --group G [--campaign C --start-at T --timezone Z]
    relay trigger optimove  --csv contexts.csv [--event-generator E --topic T]
    relay trigger batch     --csv operations.csv | --jsonl operations.jsonl
    relay watch <execution-id>
    relay executions [--status S]    relay show <id>    relay cancel <id>    relay schedules
    relay status
    relay dlq list|show|redrive      relay sign <event.json>

It finds the relay by itself against `make dev`; ``--stack-name`` reads a deployed stack's outputs;
``RELAY_API_URL`` / ``RELAY_API_KEY`` and ``--api-url`` / ``--api-key`` override (see
:mod:`relay_ops.target`). An error is printed as the relay's message, never a traceback; the exit
code is 0 on success and non-zero on any failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from relay_ops import render
from relay_ops.api import RelayApi, RelayApiError
from relay_ops.imports import ImportFileError
from relay_ops.target import Target, TargetError, resolve


class RelayGroup(TyperGroup):
    """Every failure the command foresees ends as one message on stderr and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except RelayApiError as error:
            render.error(*error.lines())
        except (TargetError, ImportFileError) as error:
            render.error(str(error))
        except OSError as error:
            render.error(f"{error.strerror or error}: {error.filename}" if error.filename else str(error))
        except Exception as error:
            from botocore.exceptions import BotoCoreError, ClientError
            from httpx import HTTPError, InvalidURL

            if not isinstance(error, BotoCoreError | ClientError | HTTPError | InvalidURL):
                raise
            render.error(f"{type(error).__name__}: {error}")
        raise typer.Exit(1)


app = typer.Typer(
    cls=RelayGroup,
    name="relay",
    help="Operate the campaign relay: triggers from files, executions, status, dead letters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
trigger_app = typer.Typer(
    cls=RelayGroup, help="Send a file of any size as triggers (resumable).", no_args_is_help=True
)
dlq_app = typer.Typer(
    cls=RelayGroup, help="The dead-letter queues: list, show, re-drive.", no_args_is_help=True
)
app.add_typer(trigger_app, name="trigger")
app.add_typer(dlq_app, name="dlq")


@app.callback()
def where(
    ctx: typer.Context,
    api_url: Annotated[str | None, typer.Option(help="The relay's API URL (default: found)")] = None,
    api_key: Annotated[str | None, typer.Option(help="An API key the relay accepts")] = None,
    stack_name: Annotated[
        str | None, typer.Option(help="A deployed stack: its outputs say where the relay is")
    ] = None,
    region: Annotated[str | None, typer.Option(help="AWS region of --stack-name")] = None,
) -> None:
    ctx.obj = {"api_url": api_url, "api_key": api_key, "stack_name": stack_name, "region": region}


def _target(ctx: typer.Context) -> Target:
    root = ctx.find_root()
    if "target" not in root.obj:
        root.obj["target"] = resolve(**{k: v for k, v in root.obj.items() if k != "target"})
    return root.obj["target"]


def _api(ctx: typer.Context) -> RelayApi:
    url, key = _target(ctx).require_api()
    return RelayApi(url, key)


# --- trigger --------------------------------------------------------------------------------------

ChunkSize = Annotated[
    int,
    typer.Option(
        min=1,
        help="Rows per trigger. Keep it when resuming: the Idempotency-Keys name the row ranges",
    ),
]
Retries = Annotated[
    int,
    typer.Option(
        min=0,
        help="Times a chunk is sent again while the relay is unreachable or busy (same key: never twice)",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")]


@trigger_app.command("optimized")
def trigger_optimized(
    ctx: typer.Context,
    csv: Annotated[
        Path,
        typer.Option(help="Profiles: first_name, last_name, phone_number, email_address, ref, attributes"),
    ],
    group: Annotated[str, typer.Option(help="Optimized.app group UUID")],
    campaign: Annotated[str | None, typer.Option(help="Campaign UUID to schedule the profiles for")] = None,
    start_at: Annotated[
        str | None, typer.Option(help="ISO 8601; local time in --timezone without an offset")
    ] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of --start-at")] = None,
    calls_per_minute: Annotated[int | None, typer.Option(min=1, max=60)] = None,
    chunk_size: ChunkSize = 1000,
    retries: Retries = 5,
    as_json: AsJson = False,
) -> None:
    """Profiles from a CSV to an Optimized.app group, in triggers of --chunk-size rows."""
    from relay_ops import triggers

    if (start_at or timezone or calls_per_minute) and not campaign:
        raise typer.BadParameter(
            "--start-at, --timezone and --calls-per-minute schedule a campaign", param_hint="--campaign"
        )
    schedule = {
        k: v
        for k, v in {
            "campaign_uuid": campaign,
            "start_at": start_at,
            "timezone": timezone,
            "calls_per_minute": calls_per_minute,
        }.items()
        if v is not None
    }
    with _api(ctx) as api:
        report = triggers.optimized(api, csv, group, schedule or None, chunk_size, retries + 1)
    raise typer.Exit(render.import_report(report, as_json))


@trigger_app.command("optimove")
def trigger_optimove(
    ctx: typer.Context,
    csv: Annotated[Path, typer.Option(help="One trigger a row: its columns are the context")],
    event_generator: Annotated[
        str | None, typer.Option(help="Event generator id (else an event_generator_id column)")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Topic key (else a topic_key column)")] = None,
    send_at: Annotated[str | None, typer.Option(help="ISO 8601 (else a send_at column; default now)")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of send_at")] = None,
    retries: Retries = 5,
    as_json: AsJson = False,
) -> None:
    """Optimove runs from a CSV, one a row: columns event_generator_id, topic_key, send_at, timezone
    and dedupe_key (when present) are the trigger's, every other column its context."""
    from relay_ops import triggers

    defaults = {
        "event_generator_id": event_generator,
        "topic_key": topic,
        "send_at": send_at,
        "timezone": timezone,
    }
    with _api(ctx) as api:
        report = triggers.optimove(api, csv, defaults, retries + 1)
    raise typer.Exit(render.import_report(report, as_json))


@trigger_app.command("batch")
def trigger_batch(
    ctx: typer.Context,
    csv: Annotated[
        Path | None, typer.Option(help="Operations: custom_id or installation, ref, attributes")
    ] = None,
    jsonl: Annotated[Path | None, typer.Option(help="Operations, one JSON object a line")] = None,
    chunk_size: ChunkSize = 1000,
    retries: Retries = 5,
    as_json: AsJson = False,
) -> None:
    """Batch.com profile updates from a CSV or JSONL file, in calls of --chunk-size operations."""
    from relay_ops import triggers

    if (csv is None) == (jsonl is None):
        raise typer.BadParameter("give one of them", param_hint="--csv / --jsonl")
    with _api(ctx) as api:
        report = triggers.batch(api, csv or jsonl, jsonl is not None, chunk_size, retries + 1)  # type: ignore[arg-type]
    raise typer.Exit(render.import_report(report, as_json))


# --- executions -----------------------------------------------------------------------------------


@app.command()
def watch(
    ctx: typer.Context,
    execution_id: Annotated[str | None, typer.Argument(help="Default: the newest execution")] = None,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between looks")] = 1.0,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 2)")] = None,
) -> None:
    """Live progress of an execution until it ends; exit 0 when all of it went out."""
    from relay_ops import watching

    with _api(ctx) as api:
        if execution_id is None:
            newest = api.get("/v1/executions", limit=1)["items"]
            if not newest:
                raise TargetError("no execution to watch yet")
            execution_id = newest[0]["execution_id"]
        raise typer.Exit(watching.watch(api, execution_id, interval_s=interval, timeout_s=timeout))


@app.command()
def executions(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only executions in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many")] = 25,
    since: Annotated[str | None, typer.Option(help="ISO 8601: created at or after")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601: created at or before")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the execution ids, one a line")] = False,
    as_json: AsJson = False,
) -> None:
    """Executions, newest first."""
    found: list[dict[str, Any]] = []
    token = None
    with _api(ctx) as api:
        while len(found) < limit:
            page = api.get(
                "/v1/executions",
                status=status,
                limit=min(100, limit - len(found)),
                since=since,
                until=until,
                next_token=token,
            )
            found += page["items"]
            token = page.get("next_token")
            if not token:
                break
    if quiet:
        for view in found[:limit]:
            render.say(view["execution_id"])
        return
    render.executions(found[:limit], as_json)


@app.command()
def show(ctx: typer.Context, execution_id: str, as_json: AsJson = False) -> None:
    """One execution: status, counts, chunks with their upstream ids, transitions."""
    with _api(ctx) as api:
        render.execution(api.get(f"/v1/executions/{execution_id}"), as_json)


@app.command()
def cancel(ctx: typer.Context, execution_id: str, as_json: AsJson = False) -> None:
    """Cancel what has not been sent yet (exit 1 when nothing is left to cancel)."""
    with _api(ctx) as api:
        render.execution(api.call("DELETE", f"/v1/executions/{execution_id}"), as_json)


@app.command()
def schedules(
    ctx: typer.Context,
    from_: Annotated[str | None, typer.Option("--from", help="ISO 8601 (default: now)")] = None,
    to: Annotated[str | None, typer.Option(help="ISO 8601 (default: --from + 7 days)")] = None,
    as_json: AsJson = False,
) -> None:
    """Scheduled work of every destination, soonest first."""
    with _api(ctx) as api:
        render.schedules(api.get("/v1/schedules", **{"from": from_, "to": to})["items"], as_json)


@app.command()
def status(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Per destination what waits and each group's use of its window; queue and DLQ depths."""
    target = _target(ctx)
    with _api(ctx) as api:
        render.status(api.get("/v1/status"), target.source, as_json)


# --- dead letters and webhooks --------------------------------------------------------------------

QueueOption = Annotated[str, typer.Option("--queue", help="A dead-letter queue's label, or all")]
MaxOption = Annotated[int, typer.Option("--max", min=1, help="At most this many messages a queue")]


def _dead_letter_queues(ctx: typer.Context, queue: str) -> dict[str, tuple[str, str]]:
    """label -> (its URL, its work queue's URL) for the chosen queues."""
    from relay_ops import dlq

    queues = dlq.dead_letter_queues()
    if queue != "all" and queue not in queues:
        raise TargetError(f"no dead-letter queue {queue!r}: one of {', '.join([*queues, 'all'])}")
    env = _target(ctx).environment
    chosen = queues if queue == "all" else {queue: queues[queue]}
    found = {
        label: (env.get(var, ""), env.get(dlq.source_queue_env(var), "")) for label, var in chosen.items()
    }
    if not any(url for url, _ in found.values()):
        names = " / ".join(chosen.values())
        raise TargetError(
            f"no dead-letter queue URL: start the local stack, give --stack-name, or set {names}"
        )
    return found


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context, queue: QueueOption = "all", max_: MaxOption = 100, as_json: AsJson = False
) -> None:
    """What is in each dead-letter queue, one line a message: its destination, execution and why it died."""
    from relay_ops import dlq

    target = _target(ctx)
    sqs = target.aws_client("sqs")
    for label, (url, _) in _dead_letter_queues(ctx, queue).items():
        if url:
            render.dead_letters(
                label, [dlq.summary(label, m) for m in dlq.receive(sqs, url, max_, peek=True)], as_json
            )


@dlq_app.command("show")
def dlq_show(ctx: typer.Context, queue: QueueOption = "all", max_: MaxOption = 100) -> None:
    """Each dead-lettered message in full, with its SQS attributes."""
    from relay_ops import dlq

    target = _target(ctx)
    sqs = target.aws_client("sqs")
    for label, (url, _) in _dead_letter_queues(ctx, queue).items():
        if not url:
            continue
        messages = dlq.receive(sqs, url, max_, peek=True)
        for m in messages:
            shown = {
                **dlq.summary(label, m),
                "message": dlq.describe(m["Body"]),
                "sqs": m.get("Attributes", {}),
            }
            render.json_out(shown)
        render.say(f"{label}: {len(messages)} message(s)")


@dlq_app.command("redrive")
def dlq_redrive(ctx: typer.Context, queue: QueueOption = "all", max_: MaxOption = 100) -> None:
    """Move the messages back to the queue they came from, where the worker takes them up again."""
    from relay_ops import dlq

    target = _target(ctx)
    sqs = target.aws_client("sqs")
    for label, (url, source) in _dead_letter_queues(ctx, queue).items():
        if not url:
            continue
        if not source:
            raise TargetError(f"no URL of {label}'s work queue to re-drive to")
        moved = dlq.move_back(sqs, label, url, source, max_, emulated=target.emulated, say=render.say)
        if target.emulated:
            render.say(f"{label}: {moved} message(s) moved back")


@app.command()
def sign(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSON file: one event or an array of events")],
    secret: Annotated[
        str | None, typer.Option(help="Default: the local stack's, or the first of WEBHOOK_SECRET")
    ] = None,
    scheme: Annotated[str, typer.Option(help="standard or hmac")] = "",
    msg_id: Annotated[str | None, typer.Option("--id", help="webhook-id (default: a new one)")] = None,
    headers: Annotated[bool, typer.Option("--headers", help="Print only the headers")] = False,
    send: Annotated[
        bool, typer.Option("--send", help="Send it and print the answer (exit 1 if refused)")
    ] = False,
    url: Annotated[
        str | None, typer.Option(help="The relay's base URL (default: found, as --api-url)")
    ] = None,
) -> None:
    """Sign a JSON file as Optimized.app would and send it to the relay (or print the curl for it)."""
    import os

    import httpx

    from relay_ops.sign import curl_command, signed_headers

    target = _target(ctx)
    chosen = secret or next((s.strip() for s in (target.webhook_secret or "").split(",") if s.strip()), None)
    if not chosen:
        raise TargetError("no secret: pass --secret or set WEBHOOK_SECRET (the one the local stack printed)")
    body = file.read_bytes()
    signed = signed_headers(
        body, chosen, scheme=scheme or os.environ.get("WEBHOOK_SCHEME", "standard"), msg_id=msg_id
    )
    if headers:
        for name, value in signed.items():
            render.say(f"{name}: {value}")
        return
    base = (url or target.api_url or f"http://127.0.0.1:{os.environ.get('RELAY_LOCAL_PORT', '3000')}").rstrip(
        "/"
    )
    if not send:
        render.say(curl_command(base, str(file), signed))
        return
    try:
        answer = httpx.post(
            f"{base}/v1/webhooks/optimized",
            content=body,
            headers={"Content-Type": "application/json", **signed},
            timeout=30,
        )
    except httpx.TransportError as exc:
        raise TargetError(f"cannot reach the relay at {base}: {exc}") from None
    if answer.status_code >= 400:
        raise RelayApiError.from_response(answer)
    render.say(answer.text)


def main(argv: list[str] | None = None) -> int:
    """The console script: the exit code instead of click's SystemExit."""
    try:
        app(args=argv, prog_name="relay", standalone_mode=True)
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
