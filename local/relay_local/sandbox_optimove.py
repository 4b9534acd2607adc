"""A built-in sandbox of Optimove's API-triggered campaigns API (stdlib only).

``POST /event-generators/{id}/run`` answers 202 ``{execution_id, status: "queued"}`` (x-api-key /
x-brand-key checked: 401 / 403); ``GET /executions/{id}/status`` moves each execution queued ->
processing -> published (with an audience_size) or failed over configurable times. It enforces
the per-brand limit (429 with Retry-After over ``rps`` in any 1 s window), can be told to fail the
next requests with any status (400/401/403/404/422/429/500), and records every request so tests
and benchmarks can check what reached it (``max_in_any_window``).

Run it alone with ``python -m relay_local.sandbox_optimove --port 8082``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

RUN_PATH = re.compile(r"^/event-generators/(?P<generator>[^/]+)/run/?$")
STATUS_PATH = re.compile(r"^/executions/(?P<execution>[^/]+)/status/?$")
FAULT_MESSAGES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "event_generator_id not found",
    422: "Event Generator is not of type API Triggered (Preference Center)",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


@dataclass
class ReceivedRun:
    generator_id: str
    topic_key: str | None
    context: Any
    arrived_at: float
    status: int
    execution_id: str | None = None
    dropped: bool = False  # created (202) but the connection was closed without an answer


@dataclass
class _Execution:
    execution_id: str
    generator_id: str
    topic_key: str
    created_at: float
    audience_size: int
    fails: bool


@dataclass
class _Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    route: str = "run"  # run | status
    generator_id: str | None = None  # only requests for this generator (runs only)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SandboxOptimove:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str = "sandbox-api-key",
        brand_key: str = "sandbox-brand-key",
        rps: float = 500,
        queued_s: float = 1.0,
        processing_s: float = 2.0,
        failing_generators: set[str] | None = None,
        unknown_generators: set[str] | None = None,
        retry_after_s: int = 1,
    ) -> None:
        self.host, self.port = host, port
        self.api_key, self.brand_key = api_key, brand_key
        self.rps = rps
        self.queued_s, self.processing_s = queued_s, processing_s
        self.failing_generators = set(failing_generators or ())
        self.unknown_generators = set(unknown_generators or ())
        self.retry_after_s = retry_after_s
        self.runs: list[ReceivedRun] = []
        self.status_reads = 0
        self.rate_limited = 0
        self.executions: dict[str, _Execution] = {}
        self._faults: deque[_Fault] = deque()
        # Seeded random trouble on runs (see chaos()): (fail, slow, slow_s, drop_after_commit).
        self._chaos: tuple[float, float, float, float] | None = None
        self._chaos_rng = random.Random(0)
        self._recent: deque[float] = deque()  # accepted request times, for the 1 s limit
        self._all_times: list[float] = []  # every request that counted against the limit
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        headers: dict[str, str] | None = None,
        route: str = "run",
        generator_id: str | None = None,
    ) -> None:
        """The next ``count`` matching requests answer ``status`` (for one generator's runs only
        when ``generator_id`` is given, so stray requests of other work cannot use them up)."""
        with self._lock:
            for _ in range(count):
                self._faults.append(_Fault(status, dict(headers or {}), route, generator_id))

    def chaos(
        self,
        *,
        fail: float = 0.0,
        slow: float = 0.0,
        slow_s: float = 1.0,
        drop_after_commit: float = 0.0,
        seed: int = 0,
    ) -> None:
        """Seeded random trouble on run requests that no scripted fault takes, off by default and
        cleared by :meth:`reset`: ``fail`` answers 500; ``slow`` answers 503 after ``slow_s``;
        ``drop_after_commit`` creates the execution (recorded as a 202 run, ``dropped=True``) and
        closes the connection without an answer. All zero turns it off."""
        if min(fail, slow, drop_after_commit) < 0 or fail + slow + drop_after_commit > 1:
            raise ValueError("chaos probabilities must be >= 0 and add up to at most 1")
        with self._lock:
            off = fail == slow == drop_after_commit == 0.0
            self._chaos = None if off else (fail, slow, max(0.0, slow_s), drop_after_commit)
            self._chaos_rng = random.Random(seed)

    def accepted_runs(self) -> list[ReceivedRun]:
        with self._lock:
            return [r for r in self.runs if r.status == 202]

    def max_in_any_window(self, window_s: float = 1.0) -> int:
        """Most requests (runs and status reads) that arrived within any ``window_s``."""
        with self._lock:
            times = sorted(self._all_times)
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window_s:
                start += 1
            best = max(best, end - start + 1)
        return best

    def reset(self) -> None:
        with self._lock:
            self.runs.clear()
            self.executions.clear()
            self._faults.clear()
            self._chaos = None
            self._recent.clear()
            self._all_times.clear()
            self.status_reads = self.rate_limited = 0

    # -- behaviour --------------------------------------------------------------------------------

    def _auth(self, headers: Any) -> int | None:
        if not hmac.compare_digest(str(headers.get("x-api-key") or ""), self.api_key):
            return 401
        if not hmac.compare_digest(str(headers.get("x-brand-key") or ""), self.brand_key):
            return 403
        return None

    def _take(self, now: float, route: str, generator_id: str | None) -> tuple[_Fault | None, bool]:
        """(injected fault, within the limit) for one request, under the lock."""
        fault = next(
            (
                f
                for f in self._faults
                if f.route == route and (f.generator_id is None or f.generator_id == generator_id)
            ),
            None,
        )
        if fault is not None:
            self._faults.remove(fault)
        while self._recent and now - self._recent[0] >= 1.0:
            self._recent.popleft()
        if len(self._recent) >= self.rps:
            self.rate_limited += 1
            return fault, False
        self._recent.append(now)
        self._all_times.append(now)
        return fault, True

    def status_of(self, execution: _Execution, now: float) -> dict[str, Any]:
        age = now - execution.created_at
        body: dict[str, Any] = {
            "execution_id": execution.execution_id,
            "created_at": _iso(execution.created_at),
            "event_generator_id": execution.generator_id,
            "topic_key": execution.topic_key,
        }
        if age < self.queued_s:
            return {**body, "status": "queued", "updated_at": _iso(execution.created_at)}
        if age < self.queued_s + self.processing_s:
            return {**body, "status": "processing", "updated_at": _iso(execution.created_at + self.queued_s)}
        done = _iso(execution.created_at + self.queued_s + self.processing_s)
        if execution.fails:
            return {
                **body,
                "status": "failed",
                "updated_at": done,
                "error_code": "AUDIENCE_RESOLUTION_FAILED",
                "error_message": "Preference Centre topic could not be resolved",
            }
        return {**body, "status": "published", "updated_at": done, "audience_size": execution.audience_size}

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        now = time.time()
        run = RUN_PATH.match(path) if method == "POST" else None
        status_match = STATUS_PATH.match(path) if method == "GET" else None
        if not run and not status_match:
            return 404, {}, {"message": "Not Found"}
        denied = self._auth(headers)
        with self._lock:
            fault, allowed = self._take(now, "run" if run else "status", run.group(1) if run else None)
            if not allowed:
                return 429, {"Retry-After": str(self.retry_after_s)}, {"message": FAULT_MESSAGES[429]}
            if status_match:
                self.status_reads += 1
            chaos = self._chaos if run and not fault and not denied else None
            draw = self._chaos_rng.random() if chaos else 1.0
        if denied:
            return denied, {}, {"message": FAULT_MESSAGES[denied]}
        drop = False
        if chaos is not None:
            fail, slow, slow_s, drop_after_commit = chaos
            if draw < fail:
                fault = _Fault(500)
            elif draw < fail + slow:
                time.sleep(slow_s)
                fault = _Fault(503)
            drop = fail + slow <= draw < fail + slow + drop_after_commit
        if fault:
            if run:
                # What a chaos fault refused is recorded with its context (who asked for what).
                asked = _json_or_none(body) if chaos is not None else None
                asked = asked if isinstance(asked, dict) else {}
                run_ = ReceivedRun(
                    run["generator"], asked.get("topic_key"), asked.get("context"), now, fault.status
                )
                with self._lock:
                    self.runs.append(run_)
            return fault.status, fault.headers, {"message": FAULT_MESSAGES.get(fault.status, "fault")}
        if status_match:
            with self._lock:
                execution = self.executions.get(status_match["execution"])
            if execution is None:
                return 404, {}, {"message": "Execution ID not found"}
            return 200, {}, self.status_of(execution, now)
        assert run is not None
        generator = run["generator"]
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            payload = None
        if (
            not isinstance(payload, dict)
            or not payload.get("topic_key")
            or not isinstance(payload.get("context"), dict)
        ):
            with self._lock:
                self.runs.append(ReceivedRun(generator, None, payload, now, 400))
            return 400, {}, {"message": "topic_key and context are required"}
        if generator in self.unknown_generators:
            with self._lock:
                self.runs.append(ReceivedRun(generator, payload["topic_key"], payload["context"], now, 404))
            return 404, {}, {"message": FAULT_MESSAGES[404]}
        execution_id = f"exec-{uuid.uuid4()}"
        digest = hashlib.sha256(f"{generator}|{payload['topic_key']}".encode()).digest()
        execution = _Execution(
            execution_id,
            generator,
            str(payload["topic_key"]),
            now,
            audience_size=1000 + int.from_bytes(digest[:3], "big") % 100_000,
            fails=generator in self.failing_generators,
        )
        with self._lock:
            self.executions[execution_id] = execution
            self.runs.append(
                ReceivedRun(generator, payload["topic_key"], payload["context"], now, 202, execution_id, drop)
            )
        if drop:
            return 0, {}, None  # created; the caller gets no answer
        return 202, {}, {"execution_id": execution_id, "status": "queued"}

    # -- server -----------------------------------------------------------------------------------

    def start(self) -> Self:
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = sandbox.handle(self.command, self.path, self.headers, body)
                if status == 0:  # chaos: dropped after commit
                    self.close_connection = True
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sandbox-optimove", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--rps", type=float, default=500)
    args = parser.parse_args(argv)
    with SandboxOptimove(port=args.port, rps=args.rps) as sandbox:
        print(f"sandbox Optimove on {sandbox.url} (x-api-key sandbox-api-key, x-brand-key sandbox-brand-key)")
        threading.Event().wait()


if __name__ == "__main__":
    main()
