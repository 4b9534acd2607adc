"""A built-in sandbox of the Optimized.app batches API for the local stack, tests and benchmarks.

It speaks the documented contract of ``POST /v1/groups/{group_id}/batches`` (bearer auth, 401,
Laravel-style fixed-window throttles per token and per group with ``X-Ratelimit-*`` headers, 422
validation errors, a 201 answer shaped like the quickstart's example) and records every request so
that tests and benchmarks can prove the relay never went above a limit.

Stdlib only. Run it alone with ``python -m relay_local.sandbox_optimized --port 8081``.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import math
import random
import re
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self

__all__ = ["ReceivedBatch", "SandboxOptimized", "main"]

MAX_PROFILES = 50
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
START_AT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
START_AT_FORMAT = "%Y-%m-%d %H:%M:%S"
API_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000000Z"
BATCHES_PATH = re.compile(r"^/v1/groups/(?P<group_id>[^/]+)/batches/?$")
MAX_BODY_BYTES = 10 * 1024 * 1024

Json = dict[str, Any]


@dataclass
class ReceivedBatch:
    """One request that reached the batches route, whatever its outcome (status 0: dropped).

    ``created``: the profiles as the sandbox created them (uuid, external_id) on a 201;
    ``dropped``: the batch was created (201) but the connection was closed without an answer
    (``chaos(drop_after_commit=...)``), so the caller cannot know it exists."""

    group_id: str
    token: str | None
    arrived_at: float
    status: int
    profiles: list[Any]
    schedule: dict[str, Any] | None
    batch_uuid: str | None
    created: list[dict[str, str]] = field(default_factory=list)
    dropped: bool = False


class Hold:
    """A batch request the sandbox holds, unanswered, until :meth:`release` (see ``hold_next``)."""

    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self.arrived = threading.Event()
        self._released = threading.Event()

    def wait_arrived(self, timeout: float) -> bool:
        """True once the held request has been read (it is then being held)."""
        return self.arrived.wait(timeout)

    def release(self) -> None:
        """Let the request go on: it is handled (and recorded) as it would have been."""
        self._released.set()

    def _hold(self) -> None:
        self.arrived.set()
        self._released.wait(self.max_s)


@dataclass(frozen=True)
class _Fault:
    kind: Literal["fail", "drop", "delay", "hold"]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: Json | None = None
    seconds: float = 0.0
    hold: Hold | None = None


@dataclass(frozen=True)
class _Chaos:
    """Seeded random upstream trouble on every batch request that no scripted fault takes."""

    fail: float
    slow: float
    slow_s: float
    drop_after_commit: float
    fail_status: int
    slow_status: int


@dataclass
class _Window:
    start: float
    count: int = 0


@dataclass(frozen=True)
class _Verdict:
    allowed: bool
    limit: int
    remaining: int
    window_end: float | None


class _FixedWindowLimiter:
    """Laravel's limiter: a window opens at the first hit after the previous one expired.

    Not thread-safe on its own; the sandbox calls it under its lock.
    """

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._windows: dict[str, _Window] = {}

    def _current(self, key: str, now: float) -> _Window | None:
        window = self._windows.get(key)
        if window is None or now >= window.start + self.window_s:
            return None
        return window

    def check(self, key: str, now: float) -> _Verdict:
        """Would one more hit be allowed now? ``remaining`` is what is left after that hit."""
        window = self._current(key, now)
        count = window.count if window else 0
        if window is not None and count >= self.limit:
            return _Verdict(False, self.limit, 0, window.start + self.window_s)
        return _Verdict(True, self.limit, max(self.limit - count - 1, 0), None)

    def peek(self, key: str, now: float) -> _Verdict:
        """The current state without hitting: ``remaining`` is what is left now."""
        window = self._current(key, now)
        count = window.count if window else 0
        end = window.start + self.window_s if window else None
        return _Verdict(count < self.limit, self.limit, max(self.limit - count, 0), end)

    def hit(self, key: str, now: float) -> None:
        window = self._current(key, now)
        if window is None:
            window = _Window(start=now)
            self._windows[key] = window
        window.count += 1

    def clear(self) -> None:
        self._windows.clear()


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _ratelimit_headers(verdict: _Verdict, now: float) -> dict[str, str]:
    headers = {"X-Ratelimit-Limit": str(verdict.limit), "X-Ratelimit-Remaining": str(verdict.remaining)}
    if not verdict.allowed and verdict.window_end is not None:
        headers["X-Ratelimit-Reset"] = str(math.ceil(verdict.window_end))
        headers["Retry-After"] = str(max(math.ceil(verdict.window_end - now), 1))
    return headers


def _api_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(API_TIME_FORMAT)


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(body: Any) -> dict[str, list[str]]:
    """Laravel-like validation of a batches body; returns ``{field: [messages]}`` (empty when valid)."""
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    if not isinstance(body, dict):
        add("body", "The request body must be a JSON object.")
        return errors

    profiles = body.get("profiles")
    if profiles is None:
        add("profiles", "The profiles field is required.")
    elif not isinstance(profiles, list):
        add("profiles", "The profiles field must be an array.")
    elif len(profiles) < 1:
        add("profiles", "The profiles field is required.")
    elif len(profiles) > MAX_PROFILES:
        add("profiles", f"The profiles field must not have more than {MAX_PROFILES} items.")
    else:
        for i, profile in enumerate(profiles):
            _validate_profile(f"profiles.{i}", profile, add)

    if "schedule" in body and body["schedule"] is not None:
        _validate_schedule(body["schedule"], add)
    return errors


def _validate_profile(prefix: str, profile: Any, add: Callable[[str, str], None]) -> None:
    if not isinstance(profile, dict):
        add(prefix, f"The {prefix} field must be an object.")
        return
    person = profile.get("person")
    if not isinstance(person, dict):
        key = f"{prefix}.person"
        add(key, f"The {key} field is required." if person is None else f"The {key} field must be an object.")
    else:
        phone_key, email_key = f"{prefix}.person.phone_number", f"{prefix}.person.email_address"
        phone, email = person.get("phone_number"), person.get("email_address")
        if phone in (None, "") and email in (None, ""):
            add(phone_key, f"The {phone_key} field is required when {email_key} is not present.")
            add(email_key, f"The {email_key} field is required when {phone_key} is not present.")
        if phone not in (None, "") and not (isinstance(phone, str) and E164.match(phone)):
            add(phone_key, f"The {phone_key} field format is invalid.")
        if email not in (None, "") and not (isinstance(email, str) and "@" in email):
            add(email_key, f"The {email_key} field must be a valid email address.")

    attributes = profile.get("attributes")
    if attributes is None:
        return
    if not isinstance(attributes, list):
        add(f"{prefix}.attributes", f"The {prefix}.attributes field must be an array.")
        return
    for j, attribute in enumerate(attributes):
        akey = f"{prefix}.attributes.{j}"
        if not isinstance(attribute, dict):
            add(akey, f"The {akey} field must be an object.")
            continue
        name = attribute.get("name")
        if not isinstance(name, str) or not name:
            add(f"{akey}.name", f"The {akey}.name field is required and must be a string.")
        if "value" not in attribute or attribute["value"] is None:
            add(f"{akey}.value", f"The {akey}.value field is required.")
        elif not isinstance(attribute["value"], str | int | float | bool):
            add(f"{akey}.value", f"The {akey}.value field must be a string, a number or a boolean.")


def _validate_schedule(schedule: Any, add: Callable[[str, str], None]) -> None:
    if not isinstance(schedule, dict):
        add("schedule", "The schedule field must be an object.")
        return
    start_at = schedule.get("start_at")
    if start_at is not None:
        valid = isinstance(start_at, str) and START_AT.match(start_at) is not None
        if valid:
            try:
                datetime.strptime(start_at, START_AT_FORMAT)
            except ValueError:
                valid = False
        if not valid:
            add("schedule.start_at", "The schedule.start_at field must match the format Y-m-d H:i:s.")
    campaign = schedule.get("campaign")
    campaign_uuid = campaign.get("uuid") if isinstance(campaign, dict) else None
    if campaign_uuid is None:
        add("schedule.campaign.uuid", "The schedule.campaign.uuid field is required.")
    elif not _is_uuid(campaign_uuid):
        add("schedule.campaign.uuid", "The schedule.campaign.uuid field must be a valid UUID.")
    if "calls_per_minute" in schedule and schedule["calls_per_minute"] is not None:
        cpm = schedule["calls_per_minute"]
        if not _is_int(cpm):
            add("schedule.calls_per_minute", "The schedule.calls_per_minute field must be an integer.")
        elif not 1 <= cpm <= 60:
            add("schedule.calls_per_minute", "The schedule.calls_per_minute field must be between 1 and 60.")


def _first_error_message(errors: dict[str, list[str]]) -> str:
    first = next(iter(errors.values()))[0]
    more = sum(len(messages) for messages in errors.values()) - 1
    if more == 0:
        return first
    return f"{first} (and {more} more error{'s' if more > 1 else ''})"


def _max_in_any_window(times: list[float], window_s: float) -> int:
    """The most arrival times inside any half-open window ``[a, a + window_s)``."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxOptimized) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut idle keep-alive connections so their handler threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SandboxOptimized/1.0"
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr log."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, answer: _Answer) -> None:
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the caller is gone (a held request)
            self.close_connection = True

    def _handle(self) -> None:
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(_Answer(413, {"message": "Payload Too Large."}))
            return
        answer = self.server.sandbox._dispatch(self.command, self.path, self.headers, raw)
        if answer is None:  # drop_next: read it all, answer nothing.
            self.close_connection = True
            return
        self._send(answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class SandboxOptimized:
    """An in-process Optimized.app batches API with the documented limits, recording and faults."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        group_limit: int = 10,
        group_window_s: float = 60,
        token_limit: int = 250,
        token_window_s: float = 60,
        clock: Callable[[], float] = time.time,
        latency_s: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.group_limit = group_limit
        self.group_window_s = group_window_s
        self.token_limit = token_limit
        self.token_window_s = token_window_s
        self.latency_s = latency_s
        self._clock = clock
        self._lock = threading.Lock()
        self._group_limiter = _FixedWindowLimiter(group_limit, group_window_s)
        self._token_limiter = _FixedWindowLimiter(token_limit, token_window_s)
        self._received: list[ReceivedBatch] = []
        self._faults: deque[_Fault] = deque()
        self._holds: list[Hold] = []
        self._chaos: _Chaos | None = None
        self._chaos_rng = random.Random(0)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"sandbox-optimized:{self.port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        with self._lock:
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.release()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("SandboxOptimized is not started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every window, recorded request and pending fault; release every hold."""
        with self._lock:
            self._group_limiter.clear()
            self._token_limiter.clear()
            self._received.clear()
            self._faults.clear()
            self._chaos = None
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.release()

    def chaos(
        self,
        *,
        fail: float = 0.0,
        slow: float = 0.0,
        slow_s: float = 1.0,
        drop_after_commit: float = 0.0,
        seed: int = 0,
        fail_status: int = 500,
        slow_status: int = 503,
    ) -> None:
        """Random trouble on batch requests from now on (seeded: the same sequence of draws for
        the same seed), off by default and cleared by :meth:`reset`; scripted faults
        (``fail_next`` ...) go first. Each request draws once:

        * ``fail``: answered ``fail_status`` at once (not counted by the throttles);
        * ``slow``: answered ``slow_status`` after ``slow_s`` seconds (keep it under the caller's
          read timeout: the caller gets an answer, late);
        * ``drop_after_commit``: handled normally and, if created (201), recorded as created with
          ``dropped=True``, then the connection is closed without an answer: the batch exists
          upstream and the caller cannot know it. A request the throttles refuse is answered.

        All zero turns it off."""
        for name, value in (("fail", fail), ("slow", slow), ("drop_after_commit", drop_after_commit)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability (0..1), not {value}")
        if fail + slow + drop_after_commit > 1.0:
            raise ValueError("fail + slow + drop_after_commit must not exceed 1")
        with self._lock:
            if fail == slow == drop_after_commit == 0.0:
                self._chaos = None
                return
            self._chaos = _Chaos(fail, slow, max(0.0, slow_s), drop_after_commit, fail_status, slow_status)
            self._chaos_rng = random.Random(seed)

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        headers: dict[str, str] | None = None,
        body: Json | None = None,
    ) -> None:
        """Answer the next ``count`` batch requests with ``status`` (not counted by the throttles)."""
        fault = _Fault("fail", status=status, headers=dict(headers or {}), body=body)
        with self._lock:
            self._faults.extend([fault] * count)

    def drop_next(self, count: int = 1) -> None:
        """Read the next ``count`` batch requests fully, then close the connection without an answer."""
        with self._lock:
            self._faults.extend([_Fault("drop")] * count)

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Sleep ``seconds`` before handling each of the next ``count`` batch requests normally."""
        with self._lock:
            self._faults.extend([_Fault("delay", seconds=seconds)] * count)

    def hold_next(self, max_s: float = 60.0) -> Hold:
        """Hold the next batch request, unanswered, until the returned :class:`Hold` is released
        (or ``max_s`` passed); then it is handled normally. ``hold.arrived`` tells it came."""
        hold = Hold(max_s)
        with self._lock:
            self._faults.append(_Fault("hold", hold=hold))
            self._holds.append(hold)
        return hold

    # -- observation -----------------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedBatch]:
        with self._lock:
            return list(self._received)

    def stats(self) -> Json:
        with self._lock:
            received = list(self._received)
        by_status: dict[str, int] = {}
        accepted_times: dict[str, list[float]] = {}
        profiles_accepted = 0
        for batch in received:
            by_status[str(batch.status)] = by_status.get(str(batch.status), 0) + 1
            if batch.status == HTTPStatus.CREATED:
                profiles_accepted += len(batch.profiles)
                accepted_times.setdefault(batch.group_id, []).append(batch.arrived_at)
        return {
            "requests": len(received),
            "by_status": by_status,
            "profiles_accepted": profiles_accepted,
            "max_in_any_window": {
                group_id: _max_in_any_window(times, self.group_window_s)
                for group_id, times in accepted_times.items()
            },
        }

    # -- request handling (called from handler threads) ------------------------------------------

    def _dispatch(self, method: str, path: str, headers: Any, raw: bytes) -> _Answer | None:
        route = path.split("?", 1)[0]
        if route.startswith("/_sandbox/"):
            return self._control(method, route)
        match = BATCHES_PATH.match(route)
        if method == "POST" and match:
            return self._batches(match["group_id"], headers.get("Authorization"), raw)
        return self._delayed(_Answer(404, {"message": f"The route {route.lstrip('/')} could not be found."}))

    def _delayed(self, answer: _Answer) -> _Answer:
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        return answer

    def _control(self, method: str, route: str) -> _Answer:
        if method == "GET" and route == "/_sandbox/stats":
            return _Answer(200, self.stats())
        if method == "GET" and route == "/_sandbox/batches":
            return _Answer(200, [asdict(batch) for batch in self.received])
        if method == "POST" and route == "/_sandbox/reset":
            self.reset()
            return _Answer(200, {"reset": True})
        return _Answer(404, {"message": "Unknown sandbox control route."})

    def _record(
        self,
        group_id: str,
        bearer: str | None,
        arrived_at: float,
        status: int,
        body: Any,
        batch_uuid: str | None = None,
        answer: _Answer | None = None,
        *,
        dropped: bool = False,
    ) -> None:
        profiles = body.get("profiles") if isinstance(body, dict) else None
        created = answer.body.get("profiles") if answer is not None and status == HTTPStatus.CREATED else None
        schedule = body.get("schedule") if isinstance(body, dict) else None
        record = ReceivedBatch(
            group_id=group_id,
            token=bearer,
            arrived_at=arrived_at,
            status=status,
            profiles=list(profiles) if isinstance(profiles, list) else [],
            schedule=schedule if isinstance(schedule, dict) else None,
            batch_uuid=batch_uuid,
            created=list(created) if isinstance(created, list) else [],
            dropped=dropped,
        )
        with self._lock:
            self._received.append(record)

    def _batches(self, group_id: str, authorization: str | None, raw: bytes) -> _Answer | None:
        arrived_at = self._clock()
        bearer = None
        if authorization and authorization[:7].lower() == "bearer ":
            bearer = authorization[7:].strip() or None
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            chaos = self._chaos if fault is None else None
            draw = self._chaos_rng.random() if chaos is not None else 1.0
        if chaos is not None:
            if draw < chaos.fail:
                fault = _Fault("fail", status=chaos.fail_status)
            elif draw < chaos.fail + chaos.slow:
                time.sleep(chaos.slow_s)
                fault = _Fault("fail", status=chaos.slow_status)
            elif draw < chaos.fail + chaos.slow + chaos.drop_after_commit:
                answer, body, batch_uuid = self._authorized_batches(group_id, bearer, raw)
                created = answer.status == HTTPStatus.CREATED
                self._record(
                    group_id, bearer, arrived_at, answer.status, body, batch_uuid, answer, dropped=created
                )
                return None if created else self._delayed(answer)
        if fault is not None and fault.kind not in ("delay", "hold"):
            body = _loads_or_none(raw)
            if fault.kind == "drop":
                self._record(group_id, bearer, arrived_at, 0, body)
                return None
            self._record(group_id, bearer, arrived_at, fault.status, body)
            default = {"message": _reason(fault.status)}
            return self._delayed(_Answer(fault.status, fault.body or default, dict(fault.headers)))
        if fault is not None and fault.hold is not None:
            fault.hold._hold()
        elif fault is not None:
            time.sleep(fault.seconds)
        answer, body, batch_uuid = self._authorized_batches(group_id, bearer, raw)
        self._record(group_id, bearer, arrived_at, answer.status, body, batch_uuid, answer)
        return self._delayed(answer)

    def _authorized_batches(
        self, group_id: str, bearer: str | None, raw: bytes
    ) -> tuple[_Answer, Any, str | None]:
        try:
            body, malformed = (json.loads(raw) if raw.strip() else None), None
        except (ValueError, UnicodeDecodeError) as exc:
            body, malformed = None, exc
        token_ok = bearer is not None and (
            self.token is None or hmac.compare_digest(bearer.encode(), self.token.encode())
        )
        with self._lock:
            # Read the clock under the lock: hits then reach the windows in the order of their
            # times. Read before it (and before parsing), a request that waited for the lock on a
            # loaded machine was counted in a window that opened after its own time, which made a
            # window span more than its length and answer 429 to a relay keeping the limit.
            now = self._clock()
            if not token_ok:
                peek = _ratelimit_headers(self._group_limiter.peek(group_id, now), now)
                return _Answer(401, {"message": "Unauthenticated."}, peek), body, None
            assert bearer is not None
            by_token = self._token_limiter.check(bearer, now)
            if not by_token.allowed:
                return _too_many(by_token, now), body, None
            by_group = self._group_limiter.check(group_id, now)
            if not by_group.allowed:
                return _too_many(by_group, now), body, None
            self._token_limiter.hit(bearer, now)
            self._group_limiter.hit(group_id, now)
        limit_headers = _ratelimit_headers(by_group, now)
        if malformed is not None:
            return _Answer(400, {"message": f"Malformed JSON body: {malformed}"}, limit_headers), None, None
        errors = _validate(body)
        if errors:
            answer = _Answer(422, {"message": _first_error_message(errors), "errors": errors}, limit_headers)
            return answer, body, None
        batch = self._created(group_id, body, now)
        return _Answer(201, batch, limit_headers), body, batch["uuid"]

    def _created(self, group_id: str, body: Json, now: float) -> Json:
        stamp = _api_time(now)
        schedule_in = body.get("schedule") if isinstance(body.get("schedule"), dict) else None
        campaign = None
        schedule = None
        if schedule_in is not None:
            campaign_uuid = schedule_in["campaign"]["uuid"]
            campaign = {"uuid": campaign_uuid, "name": f"Sandbox campaign {campaign_uuid[:8]}"}
            start_at = schedule_in.get("start_at")
            start = (
                datetime.strptime(start_at, START_AT_FORMAT).strftime(API_TIME_FORMAT) if start_at else stamp
            )
            schedule = {
                "metadata": [],
                "status": "scheduled",
                "start_at": start,
                "uuid": str(uuid.uuid4()),
                "updated_at": stamp,
                "created_at": stamp,
            }
        tag_prefix = campaign["name"] if campaign else "Sandbox batch"
        minute = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M")
        return {
            "metadata": [],
            "profiles": [
                {"external_id": f"EXT-{secrets.token_hex(6)}", "uuid": str(uuid.uuid4())}
                for _ in body["profiles"]
            ],
            "uuid": str(uuid.uuid4()),
            "updated_at": stamp,
            "created_at": stamp,
            "group": {"uuid": group_id, "name": "Sandbox group"},
            "campaign": campaign,
            "profile_tag": {
                "name": f"{tag_prefix} - {minute} - {secrets.token_hex(4)}",
                "uuid": str(uuid.uuid4()),
            },
            "schedule": schedule,
        }


def _too_many(verdict: _Verdict, now: float) -> _Answer:
    return _Answer(429, {"message": "Too Many Attempts."}, _ratelimit_headers(verdict, now))


def _reason(status: int) -> str:
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return "Sandbox fault."


def _loads_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a sandbox Optimized.app batches API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=None, help="accept only this bearer token (default: any)")
    parser.add_argument("--group-limit", type=int, default=10)
    parser.add_argument("--group-window", type=float, default=60.0)
    parser.add_argument("--token-limit", type=int, default=250)
    parser.add_argument("--token-window", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    args = parser.parse_args(argv)
    sandbox = SandboxOptimized(
        host=args.host,
        port=args.port,
        token=args.token,
        group_limit=args.group_limit,
        group_window_s=args.group_window,
        token_limit=args.token_limit,
        token_window_s=args.token_window,
        latency_s=args.latency,
    )
    with sandbox:
        print(
            f"sandbox Optimized.app on {sandbox.url} (group {args.group_limit}/{args.group_window:g}s, "
            f"token {args.token_limit}/{args.token_window:g}s); Ctrl-C to stop",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
