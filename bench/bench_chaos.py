"""`make chaos`: the whole local stack under upstream faults, crashed invocations and compressed
time, with a mixed load; then every accepted piece of work is accounted for.

Faults:
- Optimized.app (SandboxOptimized.chaos, seeded): 10% of batch requests answered 500, 3% a slow
  503 (under the relay's read timeout), 2% created upstream (recorded 201) and the connection
  closed without an answer. The sandbox Optimove gets the same small chaos mode on its runs.
- every failpoint of every function raises 3% of the times it is reached (RELAY_FAILPOINTS);
- compressed time: 10 batches per 6 s per group (token: 25 per 6 s, 250/60 s scaled), visibility
  timeouts of a few seconds, abandoned sends settled after DISPATCH_STALE_SENDING_S (above a live
  dispatcher's unsettled time), the reconciler every RELAY_LOCAL_SCHEDULE_EVERY_S repairing what
  waited RELAY_RECONCILE_AFTER_S.

Load: 4 groups x 2,500 profiles as triggers of 1..100 profiles (unique phones), 300 Optimove
triggers (a third scheduled a few seconds ahead) and 1,000 signed Optimized.app result events
naming profiles the sandbox really created, forwarded by the relay to a receiver started here.
The client retries 5xx answers and connection errors with backoff, under the same
Idempotency-Key (webhooks: the same webhook-id and event ids), for at most CLIENT_RETRY_FOR_S.

Accounting (after the drain: every execution terminal, every queue empty, nothing in flight, or
DRAIN_TIMEOUT_S):
- Optimized.app: delivered = unique phones in batches the sandbox committed (201, dropped ones
  included); lost = accepted (202) phones not delivered and not in a chunk that ended visibly
  `ambiguous`, `failed` or `dead_lettered`, plus the undelivered phones of any execution not
  terminal; duplicated = phones committed more than once, each said to lie inside an ambiguous
  chunk or not.
- Optimove: run upstream = a 202 run in the sandbox (dropped ones included); lost = accepted,
  not run and not visibly ended (failed/unknown/dead_lettered/cancelled), or not terminal.
- Webhooks: acknowledged (202) events that were not stored as a result, or not forwarded.
- repairs: the reconciler's `Repaired<Kind>` EMF metrics, counted by the stack's stdout pump.

Everything the functions print goes to .venv/chaos.log (the evidence when something is lost).
Exits 1 when anything was lost. Not part of plain `make bench` (it runs for minutes and its point
is its exit code); `python -m bench chaos` runs it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from bench.common import REPO, quiet_stack

SEED = int(os.environ.get("CHAOS_SEED", "20261202"))
GROUPS = 4
PER_GROUP = int(os.environ.get("CHAOS_PROFILES_PER_GROUP", "2500"))
OPTIMOVE_TRIGGERS = int(os.environ.get("CHAOS_OPTIMOVE_TRIGGERS", "300"))
WEBHOOK_EVENTS = int(os.environ.get("CHAOS_WEBHOOKS", "1000"))
# Every failpoint of every function: 3% raise (CHAOS_FAILPOINTS, e.g. '*=exit@0.03', to explore).
FAILPOINTS = os.environ.get("CHAOS_FAILPOINTS", "*=raise@0.03")
CLIENT_RETRY_FOR_S = 60.0
PROGRESS_EVERY_S = 15.0
LOAD_TIMEOUT_S = 240.0
DRAIN_TIMEOUT_S = float(os.environ.get("CHAOS_DRAIN_TIMEOUT_S", "300"))
LOG_PATH = REPO / ".venv" / "chaos.log"

LIMIT, WINDOW_S, TOKEN_LIMIT = 10, 6.0, 25
CONNECT_S, READ_S, INLINE_WAIT_S = 1.0, 3.0, 2.0
SLOW_S = 1.5  # the slow 503: under READ_S
# A live dispatcher settles its sends within connect + read + inline wait + 5 s (11 s here).
STALE_SENDING_S = CONNECT_S + READ_S + INLINE_WAIT_S + 5.0 + 9.0
VISIBILITY_S = {"DispatchQueue": "8", "OptimoveQueue": "5", "PollQueue": "5", "ResultsQueue": "5"}
DEAD_LETTER_QUEUES = (
    "DispatchDeadLetterQueue",
    "OptimoveDeadLetterQueue",
    "PollDeadLetterQueue",
    "ResultsDeadLetterQueue",
)

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"chaos-inbound-secret-chaos-in-32").decode()
RESULTS_SECRET = "whsec_" + base64.b64encode(b"chaos-results-secret-chaos-re-32").decode()
RESULT_TYPES = ("sms.delivered", "call.no_answer", "email.opened", "call.answered")
GENERATORS = ("chaos-gen-a", "chaos-gen-b")

OPTIMIZED_ENDED = {"ambiguous", "failed", "dead_lettered"}
OPTIMIZED_TERMINAL = {
    "completed",
    "scheduled",
    "partially_cancelled",
    "partially_failed",
    "failed",
    "cancelled",
}
OPTIMOVE_ENDED = {"failed", "unknown", "dead_lettered", "cancelled"}
OPTIMOVE_TERMINAL = {"published", *OPTIMOVE_ENDED}


def chaos_env(receiver_url: str) -> dict[str, str]:
    return {
        "RELAY_FAILPOINTS": FAILPOINTS,
        "OPTIMIZED_GROUP_LIMIT": str(LIMIT),
        "OPTIMIZED_GROUP_WINDOW_S": str(WINDOW_S),
        "OPTIMIZED_TOKEN_LIMIT": str(TOKEN_LIMIT),
        "OPTIMIZED_TOKEN_WINDOW_S": str(WINDOW_S),
        "OPTIMIZED_WINDOW_MARGIN_S": "0.05",
        "OPTIMIZED_CONNECT_TIMEOUT_S": str(CONNECT_S),
        "OPTIMIZED_READ_TIMEOUT_S": str(READ_S),
        "OPTIMIZED_RETRY_BASE_S": "0.2",
        "OPTIMIZED_RETRY_MAX_S": "2",
        "OPTIMIZED_RETRY_FOR_S": "180",  # 6 h compressed: a retried chunk dead-letters only after this
        "OPTIMIZED_MAX_ATTEMPTS": "0",
        "OPTIMIZED_RETRY_AFTER_DEFAULT_S": str(WINDOW_S),
        "DISPATCH_LINGER_S": "1.0",
        "DISPATCH_MAX_INLINE_WAIT_S": str(INLINE_WAIT_S),
        "DISPATCH_STALE_SENDING_S": str(STALE_SENDING_S),
        "RELAY_RECONCILE_AFTER_S": "15",
        "RELAY_LOCAL_SCHEDULE_EVERY_S": "3",
        "OPTIMOVE_BRAND_RPS": "50",
        "OPTIMOVE_CONNECT_TIMEOUT_S": str(CONNECT_S),
        "OPTIMOVE_READ_TIMEOUT_S": str(READ_S),
        "OPTIMOVE_RETRY_BASE_S": "0.2",
        "OPTIMOVE_RETRY_MAX_S": "2",
        "OPTIMOVE_MAX_ATTEMPTS": "8",
        "OPTIMOVE_POLL_FIRST_DELAY_S": "1",
        "OPTIMOVE_POLL_MAX_DELAY_S": "2",
        "OPTIMOVE_POLL_MAX_S": "90",
        "SANDBOX_OPTIMOVE_QUEUED_S": "0.5",
        "SANDBOX_OPTIMOVE_PROCESSING_S": "1",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "RESULTS_WEBHOOK_URL": receiver_url,
        "RESULTS_WEBHOOK_SECRET": RESULTS_SECRET,
        "RESULTS_RETRY_BASE_S": "0.5",
        "RESULTS_RETRY_MAX_S": "5",
        "RESULTS_CONNECT_TIMEOUT_S": str(CONNECT_S),
        "RESULTS_READ_TIMEOUT_S": str(READ_S),
        # Metrics on: the reconciler's Repaired<Kind> are counted from the EMF lines.
        "POWERTOOLS_METRICS_DISABLED": "false",
        "POWERTOOLS_METRICS_NAMESPACE": "CampaignRelayChaos",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


# -- the customer's results endpoint --------------------------------------------------------------


@dataclass
class Receiver:
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def webhook_ids(self, prefix: str) -> Counter[str]:
        """How often each webhook-id of an event id starting with ``prefix`` arrived."""
        with self.lock:
            bodies = list(self.received)
        return Counter(
            str(b.get("webhook-id"))
            for b in bodies
            if str(b.get("data", {}).get("event_id", "")).startswith(prefix)
        )

    def event_ids(self, prefix: str) -> Counter[str]:
        with self.lock:
            bodies = list(self.received)
        return Counter(
            str(b.get("data", {}).get("event_id"))
            for b in bodies
            if str(b.get("data", {}).get("event_id", "")).startswith(prefix)
        )


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with contextlib.suppress(ValueError), state.lock:
                state.received.append({**json.loads(body), "webhook-id": self.headers.get("webhook-id")})
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="chaos-receiver")
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/results"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# -- the client: retries 5xx and connection errors under the same key -----------------------------


@dataclass
class ClientStats:
    attempts: Counter[str] = field(default_factory=Counter)
    gave_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.attempts[what] += 1


def with_retries(
    send: Callable[[], httpx.Response], stats: ClientStats, rng: random.Random, stop: threading.Event
) -> httpx.Response | None:
    """The answer once it is neither a 5xx nor a 409 "in progress" (None: gave up after
    CLIENT_RETRY_FOR_S). The budget outlasts the API function's 29 s timeout, after which the
    in-progress lock of an attempt whose instance died expires (Powertools, Lambda context)."""
    deadline = time.monotonic() + CLIENT_RETRY_FOR_S
    attempt = 0
    while True:
        try:
            response = send()
            in_progress = response.status_code == 409 and "in_progress" in response.text
            if response.status_code < 500 and not in_progress:
                return response
            stats.count(str(response.status_code))
        except httpx.TransportError as exc:
            stats.count(type(exc).__name__)
        if time.monotonic() >= deadline or stop.is_set():
            break
        time.sleep(min(4.0, 0.2 * 2**attempt) * (0.5 + rng.random() / 2))
        attempt += 1
    with stats.lock:
        stats.gave_up += 1
    return None


# -- load ---------------------------------------------------------------------------------------


@dataclass
class Trigger:
    key: str
    group_id: str
    phones: list[str]
    execution_id: str | None = None
    status: int | None = None


def optimized_triggers(rng: random.Random) -> list[Trigger]:
    triggers = []
    for g in range(GROUPS):
        group_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        i = 0
        while i < PER_GROUP:
            n = min(rng.randint(1, 100), PER_GROUP - i)
            phones = [f"+3585{g}{j:07d}" for j in range(i, i + n)]
            triggers.append(Trigger(f"chaos-{SEED}-g{g}-{i}", group_id, phones))
            i += n
    rng.shuffle(triggers)  # the groups' triggers interleave
    return triggers


def post_trigger(
    client: httpx.Client, path: str, body: dict[str, Any], key: str, stats: ClientStats, stop: threading.Event
) -> tuple[int | None, str | None]:
    """POST a trigger under its Idempotency-Key, retried as a client would: (status, execution id)."""
    answer = with_retries(
        lambda: client.post(path, json=body, headers={"Idempotency-Key": key}),
        stats,
        random.Random(key),
        stop,
    )
    if answer is None:
        return None, None
    return answer.status_code, (answer.json()["execution_id"] if answer.status_code == 202 else None)


def send_optimized(
    client: httpx.Client, triggers: list[Trigger], stats: ClientStats, stop: threading.Event
) -> None:
    def one(t: Trigger) -> None:
        if stop.is_set():
            return
        body = {
            "group_id": t.group_id,
            "profiles": [{"person": {"phone_number": p}, "ref": p} for p in t.phones],
        }
        t.status, t.execution_id = post_trigger(client, "/v1/optimized/triggers", body, t.key, stats, stop)

    with ThreadPoolExecutor(4, thread_name_prefix="chaos-optimized") as pool:
        list(pool.map(one, triggers))


@dataclass
class OptimoveTrigger:
    n: int
    send_in_s: float | None
    execution_id: str | None = None
    status: int | None = None


def send_optimove(
    client: httpx.Client, triggers: list[OptimoveTrigger], stats: ClientStats, stop: threading.Event
) -> None:
    def one(t: OptimoveTrigger) -> None:
        if stop.is_set():
            return
        body: dict[str, Any] = {
            "event_generator_id": GENERATORS[t.n % len(GENERATORS)],
            "topic_key": "chaos",
            "context": {"n": t.n},
        }
        if t.send_in_s is not None:
            body["send_at"] = datetime.fromtimestamp(time.time() + t.send_in_s, UTC).isoformat()
        key = f"chaos-{SEED}-optimove-{t.n}"
        t.status, t.execution_id = post_trigger(client, "/v1/optimove/triggers", body, key, stats, stop)

    with ThreadPoolExecutor(2, thread_name_prefix="chaos-optimove") as pool:
        list(pool.map(one, triggers))


@dataclass
class WebhookRequest:
    msg_id: str
    events: list[dict[str, Any]]
    status: int | None = None


def send_webhooks(
    stack: Any, stats: ClientStats, rng: random.Random, stop: threading.Event, sent: list[WebhookRequest]
) -> None:
    """WEBHOOK_EVENTS result events (1..3 per request) naming profiles the sandbox created, sent
    as they become available; each request is appended to ``sent`` once answered."""
    from relay.results.signatures import standard_headers

    url = f"{stack.api_url}/v1/webhooks/optimized"
    k = 0
    with httpx.Client(timeout=30) as client:
        while k < WEBHOOK_EVENTS and not stop.is_set():
            created = [p for b in stack.sandbox.received if b.status == 201 for p in b.created]
            if len(created) < 50:
                time.sleep(0.5)
                continue
            size = min(rng.randint(1, 3), WEBHOOK_EVENTS - k)
            events = []
            for _ in range(size):
                target = rng.choice(created)
                events.append(
                    {
                        "id": f"chaos-evt-{k}",
                        "type": rng.choice(RESULT_TYPES),
                        "profile": {"uuid": target["uuid"]},
                        "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                )
                k += 1
            request = WebhookRequest(f"msg_chaos_{SEED}_{k}", events)
            raw = json.dumps(events if len(events) > 1 else events[0]).encode()

            def post(raw: bytes = raw, msg_id: str = request.msg_id) -> httpx.Response:
                # Signed afresh on each attempt (the timestamp moves), same webhook-id and events.
                headers = {
                    "content-type": "application/json",
                    **standard_headers(WEBHOOK_SECRET, msg_id, int(time.time()), raw),
                }
                return client.post(url, content=raw, headers=headers)

            answer = with_retries(post, stats, rng, stop)
            request.status = answer.status_code if answer is not None else None
            sent.append(request)


# -- observing -------------------------------------------------------------------------------------


def scan(stack: Any, table: str = "RelayTable") -> list[dict[str, Any]]:
    from relay.core.store import codec
    from relay_local import aws

    ddb = aws.client("dynamodb", stack.moto_endpoint, stack.region)
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": stack.resources.name(table), "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        items += [codec.load(i) for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def queue_depths(stack: Any, names: tuple[str, ...]) -> dict[str, int]:
    from relay_local import aws

    sqs = aws.client("sqs", stack.moto_endpoint, stack.region)
    out = {}
    for name in names:
        attrs = sqs.get_queue_attributes(
            QueueUrl=stack.resources.url(name),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        out[name] = sum(int(v) for v in attrs.values())
    return out


def in_flight(stack: Any) -> int:
    """Invocations the SQS pollers are running now."""
    return stack.pollers.in_flight() if stack.pollers else 0


def optimized_status(item: dict[str, Any]) -> str:
    from relay.destinations.optimized.executions import derive_status

    return derive_status(item)


# -- the run ---------------------------------------------------------------------------------------


def main() -> None:
    out = sys.stdout
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=out, flush=True)

    rng = random.Random(SEED)
    triggers = optimized_triggers(rng)
    optimove = [
        OptimoveTrigger(n, rng.uniform(3, 20) if n % 3 == 0 else None) for n in range(OPTIMOVE_TRIGGERS)
    ]
    LOG_PATH.parent.mkdir(exist_ok=True)
    print(
        f"== chaos: {GROUPS} groups x {PER_GROUP} profiles in {len(triggers)} triggers, {OPTIMOVE_TRIGGERS} "
        f"Optimove triggers, {WEBHOOK_EVENTS} webhook events; RELAY_FAILPOINTS={FAILPOINTS}; seed {SEED}; "
        f"function output in {LOG_PATH} ==",
        flush=True,
    )
    with open(LOG_PATH, "w") as log_file, receiver() as results_receiver:
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(handler)
        try:
            with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
                report = run(say, triggers, optimove, results_receiver)
        finally:
            logging.getLogger().removeHandler(handler)
    for line in report["lines"]:
        print(line, flush=True)
    if report["lost"]:
        raise SystemExit(1)


def run(
    say: Callable[[str], None],
    triggers: list[Trigger],
    optimove: list[OptimoveTrigger],
    results_receiver: Receiver,
) -> dict[str, Any]:
    from bench.common import api_client

    with quiet_stack(chaos_env(results_receiver.url), poller_workers=8) as stack, api_client(stack) as client:
        for queue, seconds in VISIBILITY_S.items():
            stack.set_queue_attributes(queue, VisibilityTimeout=seconds)
        stack.sandbox.chaos(fail=0.10, slow=0.03, slow_s=SLOW_S, drop_after_commit=0.02, seed=SEED)
        stack.sandbox_optimove.chaos(fail=0.10, slow=0.03, slow_s=SLOW_S, drop_after_commit=0.02, seed=SEED)
        say(f"stack up: API {stack.api_url}; chaos on; load starts")

        stats = ClientStats()
        stop = threading.Event()
        load_started = time.monotonic()
        webhook_requests: list[WebhookRequest] = []
        workers = [
            threading.Thread(
                target=send_optimized, args=(client, triggers, stats, stop), name="load-optimized"
            ),
            threading.Thread(
                target=send_optimove, args=(client, optimove, stats, stop), name="load-optimove"
            ),
            threading.Thread(
                target=send_webhooks,
                args=(stack, stats, random.Random(SEED + 1), stop, webhook_requests),
                name="load-webhooks",
            ),
        ]
        for worker in workers:
            worker.start()

        def progress() -> str:
            sandbox = stack.sandbox.stats()
            fired = sum(stack.failpoints_fired().values())
            repairs = stack.metrics_emitted().get("Repairs", 0)
            accepted = sum(len(t.phones) for t in triggers if t.execution_id)
            acked = sum(len(w.events) for w in webhook_requests if w.status == 202)
            runs = len(stack.sandbox_optimove.accepted_runs())
            forwarded = len(results_receiver.received)
            return (
                f"accepted {accepted} profiles, upstream has {sandbox['profiles_accepted']} "
                f"({sandbox['requests']} requests), Optimove runs {runs}, webhooks acked {acked}, "
                f"forwarded {forwarded}, failpoints fired {fired}, repairs {repairs:g}, "
                f"in flight {in_flight(stack)}, queued {queue_depths(stack, tuple(VISIBILITY_S))}"
            )

        next_progress = time.monotonic() + PROGRESS_EVERY_S
        while any(w.is_alive() for w in workers):
            time.sleep(0.5)
            if time.monotonic() - load_started > LOAD_TIMEOUT_S:
                stop.set()  # what is not sent by now is not sent (the run stays bounded)
            if time.monotonic() >= next_progress:
                say("loading: " + progress())
                next_progress += PROGRESS_EVERY_S
        load_s = time.monotonic() - load_started
        cut = f" (cut short after {LOAD_TIMEOUT_S:.0f} s: the rest was not sent)" if stop.is_set() else ""
        say(f"load sent in {load_s:.1f} s{cut}; draining")

        # Drain: every execution terminal, every queue empty and nothing in flight.
        drain_started = time.monotonic()
        drained = False
        main_queues = tuple(VISIBILITY_S)
        while time.monotonic() - drain_started < DRAIN_TIMEOUT_S:
            if time.monotonic() >= next_progress:
                say("draining: " + progress())
                next_progress += PROGRESS_EVERY_S
            if in_flight(stack) == 0 and not any(queue_depths(stack, main_queues).values()):
                items = scan(stack)
                if all(terminal(i) for i in items if i.get("kind") == "execution" or is_optimove(i)):
                    # Quiet twice, a moment apart: a delayed message may be between two states.
                    time.sleep(2)
                    if in_flight(stack) == 0 and not any(queue_depths(stack, main_queues).values()):
                        drained = True
                        break
            time.sleep(2)
        drain_s = time.monotonic() - drain_started
        say(f"{'drained' if drained else 'NOT drained'} after {drain_s:.1f} s; accounting")
        stop.set()
        with stack.pollers.paused(timeout=30):
            items = scan(stack)
            dlq = queue_depths(stack, DEAD_LETTER_QUEUES)
            queues = queue_depths(stack, main_queues)
            dlq_bodies = dead_letters(stack, DEAD_LETTER_QUEUES)
        return account(
            stack, triggers, optimove, webhook_requests, results_receiver, items, stats,
            load_s=load_s, drain_s=drain_s, drained=drained, dlq=dlq, queues=queues, dlq_bodies=dlq_bodies,
        )  # fmt: skip


def is_optimove(item: dict[str, Any]) -> bool:
    return item.get("destination") == "optimove" and str(item.get("sk")) == "META"


def terminal(item: dict[str, Any]) -> bool:
    if is_optimove(item):
        return item.get("status") in OPTIMOVE_TERMINAL
    return optimized_status(item) in OPTIMIZED_TERMINAL


def ambiguous_breakdown(stack: Any, chunks: Any, committed: Counter[str]) -> list[str]:
    """Why each ambiguous chunk is ambiguous, and whether its profiles ever reached the upstream:
    in a committed batch, only in requests answered 5xx, or in no request at all."""
    requested = {p["person"]["phone_number"] for b in stack.sandbox.received for p in b.profiles}
    kinds: Counter[tuple[str, str]] = Counter()
    profiles: Counter[tuple[str, str]] = Counter()
    for chunk in chunks:
        if chunk.get("status") != "ambiguous":
            continue
        message = str((chunk.get("error") or {}).get("message", ""))
        cause = "abandoned (dispatcher died)" if "dispatcher stopped" in message else f"{message[:40]!r}"
        phones = [p["person"]["phone_number"] for p in json.loads(chunk.get("profiles_json") or "[]")]
        if all(p in committed for p in phones):
            where = "committed upstream"
        elif any(p in committed for p in phones):
            where = "partly committed"
        elif any(p in requested for p in phones):
            where = "only in 5xx-answered requests"
        else:
            where = "never sent"
        kinds[(cause, where)] += 1
        profiles[(cause, where)] += len(phones)
    return [
        f"    ambiguous: {cause}, {where}: {n} chunks, {profiles[(cause, where)]} profiles"
        for (cause, where), n in sorted(kinds.items())
    ]


def dead_letters(stack: Any, names: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Every message each dead-letter queue holds (read at the end; they stay in the queue)."""
    from relay_local import aws

    sqs = aws.client("sqs", stack.moto_endpoint, stack.region)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(50):
            got = sqs.receive_message(
                QueueUrl=stack.resources.url(name), MaxNumberOfMessages=10, VisibilityTimeout=60
            ).get("Messages", [])
            if not got:
                break
            for message in got:
                with contextlib.suppress(ValueError):
                    seen[message["MessageId"]] = json.loads(message.get("Body") or "null")
        out[name] = list(seen.values())
    return out


def dead_letter_lines(dlq: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for name, bodies in dlq.items():
        if bodies:
            kinds = Counter(str(b.get("kind") if isinstance(b, dict) else "?") for b in bodies)
            lines.append(f"    {name}: {len(bodies)} message(s), by kind {dict(kinds)}")
    return lines


def account(
    stack: Any,
    triggers: list[Trigger],
    optimove: list[OptimoveTrigger],
    webhooks: list[WebhookRequest],
    results_receiver: Receiver,
    items: list[dict[str, Any]],
    stats: ClientStats,
    **run: Any,
) -> dict[str, Any]:
    lines: list[str] = []
    executions = {
        str(i["execution_id"]): i for i in items if i.get("kind") == "execution" and not is_optimove(i)
    }
    chunks = {(str(i["execution_id"]), int(i["seq"])): i for i in items if i.get("kind") == "chunk"}

    # -- Optimized.app ---------------------------------------------------------------------------
    committed: Counter[str] = Counter()
    dropped_batches = 0
    for batch in stack.sandbox.received:
        if batch.status == 201:
            dropped_batches += batch.dropped
            committed.update(p["person"]["phone_number"] for p in batch.profiles)
    accepted = [t for t in triggers if t.execution_id]
    chunk_of: dict[str, dict[str, Any] | None] = {}
    lost: list[tuple[str, str, str]] = []  # (phone, execution, why)
    not_terminal = 0
    for t in accepted:
        assert t.execution_id is not None
        execution = executions.get(t.execution_id)
        done = execution is not None and optimized_status(execution) in OPTIMIZED_TERMINAL
        not_terminal += not done
        for index, phone in enumerate(t.phones):
            chunk = chunks.get((t.execution_id, index // 50))
            chunk_of[phone] = chunk
            if phone in committed:
                continue
            status = (chunk or {}).get("status", "missing")
            if not done:
                lost.append((phone, t.execution_id, f"execution not terminal, chunk {status}"))
            elif status not in OPTIMIZED_ENDED:
                lost.append((phone, t.execution_id, f"not delivered, chunk {status}"))
    accepted_phones = {p for t in accepted for p in t.phones}
    duplicated = {p: n for p, n in committed.items() if n > 1}
    dup_ambiguous = sum(1 for p in duplicated if (chunk_of.get(p) or {}).get("status") == "ambiguous")
    chunk_status = Counter(str(c.get("status")) for c in chunks.values())
    ambiguous_chunks = chunk_status.get("ambiguous", 0)
    ended_visibly = sum(
        1
        for p in accepted_phones
        if p not in committed and (chunk_of.get(p) or {}).get("status") in OPTIMIZED_ENDED
    )
    lines.append(f"== chaos results ({'drained' if run['drained'] else 'NOT DRAINED'}) ==")
    lines.append(
        f"Optimized.app  triggers accepted {len(accepted)}/{len(triggers)} "
        f"(client gave up on {sum(1 for t in triggers if t.status is None)}, other answers "
        f"{dict(Counter(t.status for t in triggers if t.status not in (None, 202)))})"
    )
    delivered = len(set(committed) & accepted_phones)
    committed_batches = sum(1 for b in stack.sandbox.received if b.status == 201)
    lines.append(
        f"  profiles accepted {len(accepted_phones)}, delivered upstream {delivered} (in {committed_batches} "
        f"committed batches, {dropped_batches} of them dropped after commit), not delivered but visibly "
        f"ended {ended_visibly}"
    )
    lines.append(
        f"  LOST {len(lost)} (executions not terminal: {not_terminal}); DUPLICATED {len(duplicated)} "
        f"({dup_ambiguous} inside an ambiguous chunk, {len(duplicated) - dup_ambiguous} outside)"
    )
    lines.append(
        f"  chunks by status {dict(sorted(chunk_status.items()))}; ambiguous chunks {ambiguous_chunks}"
    )
    lines += ambiguous_breakdown(stack, chunks.values(), committed)
    sandbox_stats = stack.sandbox.stats()
    lines.append(
        f"  upstream answers {dict(sorted(sandbox_stats['by_status'].items()))}, most sends in any group "
        f"window {max(sandbox_stats['max_in_any_window'].values(), default=0)}/{LIMIT}"
    )
    for phone, execution_id, why in lost[:10]:
        lines.append(f"    lost {phone} execution {execution_id}: {why}")
    for phone, n in list(duplicated.items())[:10]:
        chunk = chunk_of.get(phone) or {}
        lines.append(
            f"    duplicate {phone} x{n}: chunk {chunk.get('execution_id')}#{chunk.get('seq')} "
            f"status {chunk.get('status')}"
        )

    # -- Optimove ----------------------------------------------------------------------------------
    runs = Counter(
        r.context.get("n") for r in stack.sandbox_optimove.accepted_runs() if isinstance(r.context, dict)
    )
    optimove_items = {str(i["execution_id"]): i for i in items if is_optimove(i)}
    o_accepted = [t for t in optimove if t.execution_id]
    o_lost: list[tuple[int, str, str]] = []
    for t in o_accepted:
        assert t.execution_id is not None
        status = str((optimove_items.get(t.execution_id) or {}).get("status", "missing"))
        if status not in OPTIMOVE_TERMINAL:
            o_lost.append((t.n, t.execution_id, f"not terminal: {status}"))
        elif runs[t.n] == 0 and status not in OPTIMOVE_ENDED:
            o_lost.append((t.n, t.execution_id, f"not run upstream, status {status}"))
    o_dup = {n: c for n, c in runs.items() if c > 1}
    o_status = Counter(str(i.get("status")) for i in optimove_items.values())
    o_run = sum(1 for t in o_accepted if runs[t.n])
    o_dropped = sum(r.dropped for r in stack.sandbox_optimove.accepted_runs())
    lines.append(
        f"Optimove       triggers accepted {len(o_accepted)}/{len(optimove)}, run upstream {o_run} "
        f"({o_dropped} dropped after commit), LOST {len(o_lost)}, DUPLICATED {len(o_dup)}; "
        f"statuses {dict(sorted(o_status.items()))}"
    )
    asked = Counter(r.context.get("n") for r in stack.sandbox_optimove.runs if isinstance(r.context, dict))
    ended: Counter[str] = Counter()
    for t in o_accepted:
        item = optimove_items.get(t.execution_id or "") or {}
        if item.get("status") in OPTIMOVE_ENDED:
            if runs[t.n]:
                where = "ran upstream"
            else:
                where = "never ran upstream (only 5xx answers)" if asked[t.n] else "never reached upstream"
            ended[f"{item.get('status')} ({item.get('error_code')}), {where}"] += 1
    lines += [f"    {what}: {n}" for what, n in sorted(ended.items())]
    for n, execution_id, why in o_lost[:10]:
        lines.append(f"    lost optimove #{n} execution {execution_id}: {why}")
    for n, c in list(o_dup.items())[:10]:
        lines.append(f"    duplicate optimove #{n} run x{c}")

    # -- Webhooks ----------------------------------------------------------------------------------
    acked = {e["id"] for w in webhooks if w.status == 202 for e in w.events}
    stored = Counter(str(i.get("event_id")) for i in items if str(i.get("sk", "")).startswith("RESULT#"))
    forwarded = results_receiver.event_ids("chaos-evt-")
    matched = sum(
        1
        for i in items
        if str(i.get("sk", "")).startswith("RESULT#")
        and i.get("matched")
        and str(i.get("event_id")).startswith("chaos-evt-")
    )
    w_not_stored = sorted(acked - set(stored))
    w_not_forwarded = sorted(acked - set(forwarded))
    w_lost = sorted(set(w_not_stored) | set(w_not_forwarded))
    events_sent = sum(len(w.events) for w in webhooks)
    twice = sum(1 for c in forwarded.values() if c > 1)
    # A repeat under the same webhook-id is at-least-once delivery the receiver de-duplicates.
    twice_other_id = twice - sum(1 for c in results_receiver.webhook_ids("chaos-evt-").values() if c > 1)
    stored_twice = sum(1 for c in stored.values() if c > 1)
    dropped_uuids = {p["uuid"] for b in stack.sandbox.received if b.dropped for p in b.created}
    named = {e["id"]: e["profile"]["uuid"] for w in webhooks for e in w.events}
    unmatched_dropped = sum(1 for i in acked if named.get(i) in dropped_uuids)
    lines.append(
        f"Webhooks       events sent {events_sent}, acknowledged {len(acked)}, results stored "
        f"{len(acked & set(stored))} ({matched} matched to an execution; {unmatched_dropped} name a profile "
        f"of a batch dropped after commit, which the relay cannot link), forwarded "
        f"{len(acked & set(forwarded))} "
        f"(more than once: {twice}, of them under another webhook-id: {twice_other_id}), stored more than "
        f"once {stored_twice}, LOST {len(w_lost)} (not stored {len(w_not_stored)}, not forwarded "
        f"{len(w_not_forwarded)})"
    )
    parked = {
        str(b.get("event_id")): b
        for b in run["dlq_bodies"].get("ResultsDeadLetterQueue", [])
        if isinstance(b, dict) and b.get("event_id")
    }
    marks = {  # the ledger: WEBHOOK#<source>#<event id> / DEDUPE
        str(i["pk"]).split("#", 2)[2]: i for i in items if str(i.get("pk", "")).startswith("WEBHOOK#")
    }
    for event_id in w_lost[:10]:
        mark, message = marks.get(event_id) or {}, parked.get(event_id)
        recorded_by = mark.get("recorded_by")
        where = (
            "its message is in the ResultsDeadLetterQueue"
            + (" (the message that recorded it)" if message and message.get("token") == recorded_by else "")
            if message
            else "in no dead-letter queue"
        )
        lines.append(
            f"    lost {event_id}: stored {event_id in stored}, forwarded {event_id in forwarded}; mark "
            f"recorded_by {recorded_by}, requeues {mark.get('requeues', 0)}; {where}"
        )
    optimove_forwards = results_receiver.event_ids("optimove:")
    lines.append(
        f"  Optimove statuses forwarded {len(optimove_forwards)} (of {len(o_accepted)} runs; more than once: "
        f"{sum(1 for c in optimove_forwards.values() if c > 1)})"
    )

    # -- Crashes, repairs, time ----------------------------------------------------------------------
    fired = stack.failpoints_fired()
    metrics = stack.metrics_emitted()
    lines.append(
        f"Failpoints     fired {sum(fired.values())}: "
        + ", ".join(f"{name} {n}" for name, n in fired.most_common())
    )
    repairs = {
        k.removeprefix("Repaired"): int(v) for k, v in sorted(metrics.items()) if k.startswith("Repaired")
    }
    lines.append(f"Repairs        {int(metrics.get('Repairs', 0))} by kind {repairs or '{}'}")
    notable = (
        "ChunksAbandoned",
        "BatchesAmbiguous",
        "ChunksDeadLettered",
        "UpstreamUnavailable",
        "UpstreamRateLimited",
        "ClaimConflicts",
        "ResultsForwardRetried",
        "ResultsDeadLettered",
    )
    lines.append("Metrics        " + ", ".join(f"{k} {int(metrics.get(k, 0))}" for k in notable))
    lines.append(
        f"Client         retried {dict(stats.attempts)}, gave up {stats.gave_up}; queues at the end "
        f"{run['queues']}, dead-letter queues {run['dlq']}"
    )
    lines += dead_letter_lines(run["dlq_bodies"])
    lines.append(
        f"Time           load {run['load_s']:.1f} s, drain {run['drain_s']:.1f} s "
        f"({'all executions terminal, all queues empty' if run['drained'] else 'timed out'})"
    )
    total_lost = len(lost) + len(o_lost) + len(w_lost)
    outside = len(duplicated) - dup_ambiguous
    verdict = "PASS" if not total_lost and not outside else "FAIL"
    lines.append(
        f"RESULT         lost {total_lost}, duplicates outside ambiguous chunks {outside}: {verdict}"
    )
    return {"lines": lines, "lost": total_lost}


if __name__ == "__main__":
    main()
