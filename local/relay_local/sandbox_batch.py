"""A built-in sandbox of Batch.com's CEP API 2.x (stdlib only).

``POST /profiles/update`` takes a JSON array of at most ``operations_per_call`` operations (400
beyond) and answers 202 ``{"code": "SUCCESS"}`` or ``SUCCESS_WITH_PARTIAL_ERRORS`` with one
``{category, bulk_index, reason, attribute?}`` per invalid operation (both or neither identifier, an
event name off the pattern, an over-long text). Its limit is a token bucket of ``updates_per_s``
refilled, ``updates_burst`` deep, one token per distinct custom id / installation in a call: over
it, 429 with no Retry-After (as Batch documents). Every other path counts against
``project_rps`` requests a second per project key (429 without Retry-After too); the audience
endpoints are served by :meth:`SandboxBatch.handle_audiences`. Both keys are checked
(``Authorization: Bearer <REST key>``, ``X-Batch-Project``): 401 ``AUTHENTICATION_INVALID``.

Tests switch on trouble with :meth:`fail_next` (any status, e.g. 500/401/400/429 with or without
a Retry-After) and :meth:`hang_next` (apply the call, then answer only after ``seconds``: the
client times out after sending). Counters (``calls``, ``rate_limited``, ``profiles``) say what
reached it.

Run it alone with ``python -m relay_local.sandbox_batch --port 8083``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

PROFILES_UPDATE = "/profiles/update"
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "AUTHENTICATION_INVALID",
    403: "FORBIDDEN",
    404: "ROUTE_NOT_FOUND",
    429: "TOO_MANY_REQUESTS",
    500: "SERVER_ERROR",
    503: "MAINTENANCE",
}


@dataclass
class ReceivedCall:
    path: str
    arrived_at: float
    status: int
    operations: int = 0
    updates: int = 0
    partial_errors: int = 0


@dataclass
class _Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    path: str | None = None  # only requests to this path (None: any)
    hang_s: float = 0.0  # > 0: apply, then answer after this long


def _error(status: int, message: str) -> dict[str, str]:
    return {"error_code": ERROR_CODES.get(status, f"HTTP_{status}"), "error_message": message}


class SandboxBatch:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rest_key: str = "sandbox-rest-key",
        project_key: str = "project_sandbox",
        operations_per_call: int = 200,
        updates_per_s: float = 300.0,
        updates_burst: float = 1000.0,
        project_rps: float = 1.0,
        event_name_pattern: str = r"^[a-z0-9_]{1,30}$",
        max_text_length: int = 300,
    ) -> None:
        self.host, self.port = host, port
        self.rest_key, self.project_key = rest_key, project_key
        self.operations_per_call = operations_per_call
        self.updates_per_s, self.updates_burst = updates_per_s, updates_burst
        self.project_rps = project_rps
        self.event_name = re.compile(event_name_pattern)
        self.max_text_length = max_text_length
        self.calls: list[ReceivedCall] = []
        self.rate_limited = 0
        # Profiles as Batch would hold them: custom id / installation -> attributes and events.
        self.profiles: dict[str, dict[str, Any]] = {}
        self._tokens = float(updates_burst)
        self._tokens_at = time.time()
        self._project_recent: dict[str, deque[float]] = {}
        self._faults: deque[_Fault] = deque()
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
        path: str | None = PROFILES_UPDATE,
    ) -> None:
        """The next ``count`` requests to ``path`` (None: any) answer ``status`` without acting."""
        with self._lock:
            self._faults.extend(_Fault(status, dict(headers or {}), path) for _ in range(count))

    def hang_next(self, seconds: float, count: int = 1, *, path: str | None = PROFILES_UPDATE) -> None:
        """The next ``count`` requests are applied, then answered only after ``seconds``."""
        with self._lock:
            self._faults.extend(_Fault(202, {}, path, hang_s=seconds) for _ in range(count))

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.profiles.clear()
            self._faults.clear()
            self._project_recent.clear()
            self.rate_limited = 0
            self._tokens, self._tokens_at = float(self.updates_burst), time.time()

    def profile_calls(self, status: int | None = 202) -> list[ReceivedCall]:
        with self._lock:
            return [
                c for c in self.calls if c.path == PROFILES_UPDATE and (status is None or c.status == status)
            ]

    # -- behaviour --------------------------------------------------------------------------------

    def _auth(self, headers: Any) -> bool:
        authorization = str(headers.get("authorization") or "")
        return hmac.compare_digest(authorization, f"Bearer {self.rest_key}") and hmac.compare_digest(
            str(headers.get("x-batch-project") or ""), self.project_key
        )

    def _fault_for(self, path: str) -> _Fault | None:
        fault = next((f for f in self._faults if f.path is None or f.path == path), None)
        if fault is not None:
            self._faults.remove(fault)
        return fault

    def _take_updates(self, n: int, now: float) -> bool:
        """The documented token bucket: refilled at updates_per_s, at most updates_burst."""
        self._tokens = min(self.updates_burst, self._tokens + (now - self._tokens_at) * self.updates_per_s)
        self._tokens_at = now
        if self._tokens < n:
            return False
        self._tokens -= n
        return True

    def _take_project_request(self, project: str, now: float) -> bool:
        """At most project_rps requests in any 1 s window per project key (other endpoints)."""
        recent = self._project_recent.setdefault(project, deque())
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        if len(recent) >= self.project_rps:
            return False
        recent.append(now)
        return True

    def operation_errors(self, index: int, operation: Any) -> list[dict[str, Any]]:
        """Why Batch would refuse one operation (partial errors), empty if it is valid."""
        if not isinstance(operation, dict):
            return [{"category": "operation", "bulk_index": index, "reason": "an operation is an object"}]
        identifiers = operation.get("identifiers")
        if not isinstance(identifiers, dict) or len({"custom_id", "installation"} & set(identifiers)) != 1:
            return [
                {
                    "category": "identifiers",
                    "bulk_index": index,
                    "reason": "exactly one of custom_id or installation is required",
                }
            ]
        errors = []
        for name, value in (operation.get("attributes") or {}).items():
            if isinstance(value, str) and len(value) > self.max_text_length:
                errors.append(
                    {
                        "category": "attributes",
                        "bulk_index": index,
                        "reason": "text too long",
                        "attribute": name,
                    }
                )
        for event in operation.get("events") or []:
            name = event.get("name") if isinstance(event, dict) else None
            if not isinstance(name, str) or not self.event_name.match(name):
                errors.append(
                    {"category": "events", "bulk_index": index, "reason": f"invalid event name {name!r}"}
                )
        return errors

    def _apply(self, operation: dict[str, Any]) -> None:
        identifiers = operation["identifiers"]
        key = (
            f"custom_id:{identifiers['custom_id']}"
            if "custom_id" in identifiers
            else f"installation:{identifiers['installation']}"
        )
        profile = self.profiles.setdefault(key, {"attributes": {}, "events": []})
        for name, value in (operation.get("attributes") or {}).items():
            if value is None:
                profile["attributes"].pop(name, None)
            elif isinstance(value, dict) and "$add" in value:
                profile["attributes"].setdefault(name, [])
                profile["attributes"][name] = [*profile["attributes"][name], *value["$add"]]
            else:
                profile["attributes"][name] = value
        profile["events"] += list(operation.get("events") or [])

    def update_profiles(self, headers: Any, body: bytes, now: float) -> tuple[int, dict[str, str], Any]:
        try:
            operations = json.loads(body or b"null")
        except ValueError:
            operations = None
        if not isinstance(operations, list) or not operations:
            self.calls.append(ReceivedCall(PROFILES_UPDATE, now, 400))
            return 400, {}, _error(400, "the body must be a non-empty JSON array of operations")
        if len(operations) > self.operations_per_call:
            self.calls.append(ReceivedCall(PROFILES_UPDATE, now, 400, len(operations)))
            return 400, {}, _error(400, f"at most {self.operations_per_call} operations per call")
        ids = set()
        for op in operations:
            identifiers = op.get("identifiers") if isinstance(op, dict) else None
            if isinstance(identifiers, dict):
                ids.add(
                    f"custom_id:{identifiers['custom_id']}"
                    if "custom_id" in identifiers
                    else f"installation:{identifiers.get('installation')}"
                )
        updates = max(1, len(ids))
        if not self._take_updates(updates, now):
            self.rate_limited += 1
            self.calls.append(ReceivedCall(PROFILES_UPDATE, now, 429, len(operations), updates))
            return 429, {}, _error(429, "profile update rate limit exceeded")
        errors = [e for i, op in enumerate(operations) for e in self.operation_errors(i, op)]
        refused = {e["bulk_index"] for e in errors}
        for i, op in enumerate(operations):
            if i not in refused:
                self._apply(op)
        self.calls.append(ReceivedCall(PROFILES_UPDATE, now, 202, len(operations), updates, len(refused)))
        if errors:
            return 202, {}, {"code": "SUCCESS_WITH_PARTIAL_ERRORS", "errors": errors}
        return 202, {}, {"code": "SUCCESS"}

    def handle_audiences(
        self, method: str, path: str, query: dict[str, list[str]], payload: Any, now: float
    ) -> tuple[int, dict[str, str], Any]:
        """The ``/audiences/*`` endpoints (create, update, replace, remove, list, view) with their
        indexing states: served by the audiences part of the sandbox, added here."""
        return 404, {}, _error(404, f"{method} {path} is not served by this sandbox")

    def handle(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], Any, float]:
        """(status, headers, payload, seconds to wait before answering) for one request."""
        now = time.time()
        url = urlsplit(path)
        route = url.path.removeprefix("/2.0").rstrip("/") or "/"
        with self._lock:
            if not self._auth(headers):
                self.calls.append(ReceivedCall(route, now, 401))
                return 401, {}, _error(401, "the REST API key is not valid for this project"), 0.0
            fault = self._fault_for(route)
            if fault is not None and not fault.hang_s:
                self.calls.append(ReceivedCall(route, now, fault.status))
                if fault.status == 429:
                    self.rate_limited += 1
                return fault.status, fault.headers, _error(fault.status, "fault injected by the sandbox"), 0.0
            hang = fault.hang_s if fault else 0.0
            if route == PROFILES_UPDATE and method == "POST":
                return (*self.update_profiles(headers, body, now), hang)
            if not self._take_project_request(str(headers.get("x-batch-project")), now):
                self.rate_limited += 1
                self.calls.append(ReceivedCall(route, now, 429))
                return 429, {}, _error(429, "1 request per second per project key"), 0.0
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return 400, {}, _error(400, "the body is not JSON"), 0.0
        if route.startswith("/audiences/"):
            status, answer_headers, answer = self.handle_audiences(
                method, route, parse_qs(url.query), payload, now
            )
        else:
            status, answer_headers, answer = 404, {}, _error(404, f"no route {method} {route}")
        with self._lock:
            self.calls.append(ReceivedCall(route, now, status))
        return status, answer_headers, answer, hang

    # -- server -----------------------------------------------------------------------------------

    def start(self) -> Self:
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""  # drained before any answer
                status, headers, payload, hang_s = sandbox.handle(self.command, self.path, self.headers, body)
                if hang_s:
                    time.sleep(hang_s)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up waiting (hang_next)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-batch", daemon=True)
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
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--updates-per-s", type=float, default=300)
    parser.add_argument("--updates-burst", type=float, default=1000)
    args = parser.parse_args(argv)
    with SandboxBatch(
        port=args.port, updates_per_s=args.updates_per_s, updates_burst=args.updates_burst
    ) as sandbox:
        print(f"sandbox Batch on {sandbox.url} (Bearer sandbox-rest-key, X-Batch-Project project_sandbox)")
        threading.Event().wait()


if __name__ == "__main__":
    main()
