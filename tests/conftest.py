"""Shared fixtures: ONE compressed local stack for the relay's integration and e2e tests.

moto's state is process-global, so the whole session shares one ``LocalStack`` (started on first
use, with tests that need it ordered last so other modules' own stacks are gone by then). Limits
are compressed (3 sends per 2 s per group, 8 per 2 s per token) so rate limiting shows in
seconds; every test gets wiped AWS state, a reset sandbox and its own random group id.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from relay_local import aws
from relay_local.stack import LocalStack

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"

GROUP_LIMIT = 3
GROUP_WINDOW_S = 2.0
TOKEN_LIMIT = 8
TOKEN_WINDOW_S = 2.0

COMPRESSED_ENV = {
    "OPTIMIZED_GROUP_LIMIT": str(GROUP_LIMIT),
    "OPTIMIZED_GROUP_WINDOW_S": str(GROUP_WINDOW_S),
    "OPTIMIZED_TOKEN_LIMIT": str(TOKEN_LIMIT),
    "OPTIMIZED_TOKEN_WINDOW_S": str(TOKEN_WINDOW_S),
    "OPTIMIZED_WINDOW_MARGIN_S": "0.02",
    "DISPATCH_LINGER_S": "0.2",
    "DISPATCH_MAX_INLINE_WAIT_S": "2",
    "DISPATCH_GATHER_S": "0.25",
    "OPTIMIZED_RETRY_BASE_S": "0.05",
    "OPTIMIZED_RETRY_MAX_S": "0.5",
    "OPTIMIZED_MAX_ATTEMPTS": "3",
    "OPTIMIZED_READ_TIMEOUT_S": "1",
    "OPTIMIZED_CONNECT_TIMEOUT_S": "1",
    "OPTIMIZED_RESEND_AMBIGUOUS": "false",
    "BATCH_DISPATCH_LINGER_S": "0.2",
    "BATCH_RETRY_BASE_S": "0.05",
    "BATCH_RETRY_MAX_S": "0.5",
    "BATCH_RETRY_AFTER_DEFAULT_S": "0.2",
    "BATCH_READ_TIMEOUT_S": "1",
    "BATCH_CONNECT_TIMEOUT_S": "1",
    "RELAY_MAX_BODY_BYTES": "200000",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_NAMESPACE": "CampaignRelayTests",
    "POWERTOOLS_TRACE_DISABLED": "true",
}

CAMPAIGN = "9e679c93-ff33-4b1e-bfad-1ac77afe1aef"
# Where an Optimized.app execution ends up once every chunk is settled ("scheduled": handed upstream
# for a campaign that starts later, e.g. a trigger made with `schedule(3600)`).
FINISHED = {"completed", "scheduled", "partially_cancelled", "partially_failed", "failed", "cancelled"}

RELAY_FIXTURE = "relay"
DEV_FIXTURE = "dev_stack"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests on the shared relay stack run last: modules that start their own LocalStack (one per
    # process at a time) are then done before the shared one starts, and it is started only once.
    # Tests on `make dev` (a process of its own) run together just before, so it runs once and
    # is stopped before the shared stack starts.
    def uses(item: pytest.Item, fixture: str) -> bool:
        return fixture in getattr(item, "fixturenames", ())

    shared = [item for item in items if uses(item, RELAY_FIXTURE)]
    dev = [item for item in items if uses(item, DEV_FIXTURE) and not uses(item, RELAY_FIXTURE)]
    own = [item for item in items if item not in shared and item not in dev]
    items[:] = own + dev + shared


# -- the stack ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def relay_stack() -> Iterator[LocalStack]:
    # Two instances per function at most: the suite runs on two cores, where more instances than
    # cores (beside moto and the stack) only starve one another - and delay a send past the
    # Optimove limiter's bucket, which the upstream then counts in the next second (a 429).
    with LocalStack(
        api_port=0, env=COMPRESSED_ENV, sandbox=True, poller_workers=6, max_concurrency=2
    ) as stack:
        yield stack


@pytest.fixture
def relay(relay_stack: LocalStack) -> Iterator[LocalStack]:
    """The shared stack with nothing in it: empty table and queues, sandbox forgotten."""
    relay_stack.reset_aws()
    relay_stack.sandbox.reset()
    relay_stack.sandbox_batch.reset()
    yield relay_stack
    relay_stack.sandbox.reset()
    relay_stack.sandbox_batch.reset()


@pytest.fixture
def group() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def api(relay: LocalStack) -> Iterator[Api]:
    with Api(relay) as client:
        yield client


@pytest.fixture
def ddb(relay: LocalStack) -> Any:
    return boto3.client(
        "dynamodb", endpoint_url=relay.moto_endpoint, region_name="us-east-1", **aws.DUMMY_CREDENTIALS
    )


@pytest.fixture
def sqs(relay: LocalStack) -> Any:
    return boto3.client(
        "sqs", endpoint_url=relay.moto_endpoint, region_name="us-east-1", **aws.DUMMY_CREDENTIALS
    )


@contextmanager
def relay_env(**values: str) -> Iterator[None]:
    """Change relay settings for a block, then restore them: a configuration update of the
    running stack's functions (instances started from then on see the new values)."""
    stack = LocalStack.active()
    if stack is None:
        raise RuntimeError("relay_env needs a running LocalStack")
    with stack.environment(**values):
        yield


@contextmanager
def crash_at(name: str, action: str = "raise") -> Iterator[None]:
    """Arm failpoint ``name`` for a block (``RELAY_FAILPOINTS``), then wait until it has fired at
    least once before disarming it: what follows the block is the recovery (Lambda retries, SQS
    redelivery, the reconciler) on instances started without the failpoint."""
    stack = LocalStack.active()
    if stack is None:
        raise RuntimeError("crash_at needs a running LocalStack")
    before = stack.failpoints_fired()[name]
    with relay_env(RELAY_FAILPOINTS=f"{name}={action}"):
        yield
        fired = lambda: stack.failpoints_fired()[name] > before  # noqa: E731
        wait_for(fired, timeout=30, what=f"failpoint {name} to fire")


# -- payloads -------------------------------------------------------------------------------------


def profile(i: int, **extra: Any) -> dict[str, Any]:
    return {"person": {"phone_number": f"+3584{i:08d}", "first_name": f"P{i}"}, "ref": f"ref-{i}", **extra}


def profiles(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [profile(i) for i in range(start, start + n)]


def schedule(start_in_s: float | None = 3600, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"campaign_uuid": CAMPAIGN, **extra}
    if start_in_s is not None:
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + start_in_s))
        out["start_at"] = start
    return out


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


# -- API client -----------------------------------------------------------------------------------


class Api:
    """The relay's HTTP API over loopback, authenticated, with polling helpers."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.http = httpx.Client(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=30
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def trigger(
        self,
        group: str,
        people: list[dict[str, Any]] | int = 1,
        sched: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        expect: int | None = 202,
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "group_id": group,
            "profiles": profiles(people) if isinstance(people, int) else people,
        }
        if sched is not None:
            body["schedule"] = sched
        headers = {"Idempotency-Key": key} if key else {}
        response = self.http.post("/v1/optimized/triggers", json=body, headers=headers)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    def execution(self, execution_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/executions/{execution_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(
        self,
        execution_id: str,
        until: Callable[[dict[str, Any]], bool] = lambda e: e["status"] in FINISHED,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Poll GET /v1/executions/{id} until ``until`` holds (deadline, no fixed sleeps)."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.execution(execution_id)
            if until(current):
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting on execution {execution_id}: {current}")
            time.sleep(0.05)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- looking inside AWS ---------------------------------------------------------------------------


def scan_all(ddb: Any, table: str = "RelayTable") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def chunk_items(ddb: Any, execution_id: str) -> list[dict[str, Any]]:
    """The stored chunks of an execution in seq order, plain Python values."""
    from relay.core.store import codec

    items = ddb.query(
        TableName="RelayTable",
        KeyConditionExpression="pk = :pk AND begins_with(sk, :c)",
        ExpressionAttributeValues={":pk": {"S": f"EXEC#{execution_id}"}, ":c": {"S": "CHUNK#"}},
        ConsistentRead=True,
    )["Items"]
    return sorted((codec.load(i) for i in items), key=lambda c: c["seq"])


def queue_depth(sqs: Any, url: str) -> int:
    """Every message in a queue: visible, in flight and delayed."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def dlq_messages(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages")
    return [json.loads(m["Body"]) for m in messages or []]


def batches_for(stack: LocalStack, group: str, status: int | None = None) -> list[Any]:
    return [
        b for b in stack.sandbox.received if b.group_id == group and (status is None or b.status == status)
    ]


# -- `make dev`, as a user runs it ----------------------------------------------------------------

USER_ENV_KEYS = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SHELL")


def user_path() -> str:
    """PATH as a user has it after the README's setup: the project's virtualenv is not on it
    (the README never activates it), whatever the shell running the tests has."""
    venvs = {Path(sys.prefix).resolve(), (REPO / ".venv").resolve()}
    if os.environ.get("VIRTUAL_ENV"):
        venvs.add(Path(os.environ["VIRTUAL_ENV"]).resolve())
    kept = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        resolved = Path(entry).resolve() if entry else None
        if resolved is None or any(resolved == v or v in resolved.parents for v in venvs):
            continue
        kept.append(entry)
    return os.pathsep.join(kept)


def user_environment(**extra: str) -> dict[str, str]:
    """A user's shell environment: none of the relay's settings, AWS variables or test values that
    a stack running in this process has put in ``os.environ``."""
    env = {key: os.environ[key] for key in USER_ENV_KEYS if key in os.environ}
    env["PATH"] = user_path()
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra)
    return env


class DevStack:
    """``make dev`` in a process of its own (``.venv/bin/relay-local``, what the make target runs),
    from the repository root, with a user's environment, on a free port: its terminal output is
    collected line by line; it writes ``.venv/relay-local.env`` and ``.venv/relay-local.log`` of
    this checkout, as ``make dev`` does (so do not run ``make dev`` in this checkout meanwhile)."""

    BANNER_END = "Ctrl-C to stop."
    ENV_FILE = REPO / ".venv" / "relay-local.env"
    LOG_FILE = REPO / ".venv" / "relay-local.log"

    def __init__(self, timeout_s: float = 180.0) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        script = Path(sys.prefix) / "bin" / "relay-local"
        self.process = subprocess.Popen(
            [str(script)],
            cwd=REPO,
            env=user_environment(RELAY_LOCAL_PORT="0", PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="dev-stack-output", daemon=True)
        self._reader.start()
        try:
            wait_for(
                lambda: self.BANNER_END in self.output() or self.process.poll() is not None,
                timeout=timeout_s,
                what="make dev to print its banner",
            )
            if self.process.poll() is not None:
                raise AssertionError(f"relay-local exited with {self.process.returncode}:\n{self.output()}")
            self.env = self._read_env_file()
        except BaseException:
            self.stop()
            raise
        self.url = self.env["RELAY_API_URL"]
        self.key = self.env["RELAY_API_KEY"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def _read_env_file(self) -> dict[str, str]:
        values = {}
        for line in self.ENV_FILE.read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                values[name] = shlex.split(value)[0] if value else ""
        return values

    def output(self, since: int = 0) -> str:
        with self._lock:
            return "\n".join(self.lines[since:])

    def mark(self) -> int:
        """Where the output is now: ``output(since=mark)`` is what came after."""
        with self._lock:
            return len(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # relay-local stops its stack and instances
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(5)


_dev_stack: DevStack | None = None


@pytest.fixture
def dev_stack() -> DevStack:
    """``make dev``, started by the first test that asks and stopped after the last one in a row
    (they are ordered together)."""
    global _dev_stack
    if _dev_stack is None:
        _dev_stack = DevStack()
    return _dev_stack


def _stop_dev_stack() -> None:
    global _dev_stack
    if _dev_stack is not None:
        stack, _dev_stack = _dev_stack, None
        stack.stop()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or DEV_FIXTURE not in getattr(nextitem, "fixturenames", ()):
        _stop_dev_stack()


def pytest_sessionfinish() -> None:
    _stop_dev_stack()
