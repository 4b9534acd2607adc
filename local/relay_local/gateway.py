"""A local API Gateway HTTP API: routes from the template, payload format 2.0 events.

Requests are matched against every function's ``HttpApi`` events (Method + Path with ``{param}``
and ``{proxy+}`` placeholders, ``ANY`` and ``$default``), turned into the event API Gateway would
send, and the handler's answer is written back as API Gateway would write it.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from relay_local.template import DEFAULT_ACCOUNT_ID

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
API_ID = "relaylocal"

_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/graphql",
    "application/yaml",
    "application/x-yaml",
    "application/ld+json",
)
_BINARY_TYPES = (
    "application/octet-stream",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/pdf",
    "application/protobuf",
    "application/x-protobuf",
    "application/msgpack",
    "application/cbor",
    "multipart/",
    "image/",
    "audio/",
    "video/",
    "font/",
)


def is_binary_content_type(content_type: str | None) -> bool:
    """True for content types whose bodies API Gateway passes base64-encoded."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith(_TEXT_TYPES) or media.endswith(("+json", "+xml")):
        return False
    return media.startswith(_BINARY_TYPES)


@dataclass(frozen=True)
class Route:
    method: str
    """Upper-case method, ``ANY``, or ``*`` for the ``$default`` route."""
    path: str
    """Path template (``/v1/executions/{id}``), or ``$default``."""
    target: Callable[[dict[str, Any]], Any]
    """Called with the v2 event; returns the handler's raw result."""
    name: str = ""

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when this route takes the request, else None."""
        if self.path == "$default":
            return {}
        if self.method not in ("ANY", method):
            return None
        pattern_parts = self.path.strip("/").split("/") if self.path != "/" else [""]
        parts = path.strip("/").split("/") if path != "/" else [""]
        params: dict[str, str] = {}
        for index, pattern in enumerate(pattern_parts):
            greedy = re.fullmatch(r"\{(\w+)\+\}", pattern)
            if greedy:
                rest = parts[index:]
                if not rest or rest == [""]:
                    return None
                params[greedy.group(1)] = unquote("/".join(rest))
                return params
            if index >= len(parts):
                return None
            param = re.fullmatch(r"\{(\w+)\}", pattern)
            if param:
                if not parts[index]:
                    return None
                params[param.group(1)] = unquote(parts[index])
            elif pattern != parts[index]:
                return None
        return params if len(parts) == len(pattern_parts) else None

    def specificity(self) -> tuple[int, tuple[int, ...], int]:
        """Sort key: $default last, greedy after plain, literal segments before params, ANY last."""
        if self.path == "$default":
            return (3, (), 1)
        segments = self.path.strip("/").split("/")
        greedy = 1 if segments and segments[-1].endswith("+}") else 0
        kinds = tuple(1 if s.startswith("{") else 0 for s in segments)
        return (greedy, kinds, 1 if self.method == "ANY" else 0)


class Router:
    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: list[Route] = []
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        self.routes.append(route)
        self.routes.sort(key=Route.specificity)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method.upper(), path)
            if params is not None:
                return route, params
        return None


def http_api_routes(
    template: Mapping[str, Any], invokers: Mapping[str, Callable[[dict[str, Any]], Any]]
) -> list[Route]:
    """Routes of every function's ``HttpApi`` events; ``invokers`` maps function id -> callable."""
    routes = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if logical_id not in invokers:
            continue
        events = ((resource or {}).get("Properties") or {}).get("Events") or {}
        for event_name, event in events.items():
            if (event or {}).get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            method = str(props.get("Method", "ANY")).upper()
            path = str(props.get("Path", "$default"))
            if method in ("X-AMAZON-APIGATEWAY-ANY-METHOD", "*"):
                method = "ANY"
            routes.append(Route(method, path, invokers[logical_id], f"{logical_id}.{event_name}"))
    return routes


def build_http_event(
    method: str,
    path: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | None,
    route_key: str,
    path_parameters: Mapping[str, str] | None = None,
    *,
    source_ip: str = "127.0.0.1",
    domain_name: str | None = None,
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload format 2.0 event, as API Gateway builds it.

    ``path`` may carry the query string (``/v1/x?a=1&a=2``). Repeated headers are comma-joined,
    header names lower-cased, cookies moved to ``cookies``; the body is base64-encoded when it is
    not UTF-8 text or its content type is binary.
    """
    split = urlsplit(path)
    raw_path = split.path or "/"
    raw_query = split.query
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in pairs:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    now = time.time() if now is None else now
    request_id = request_id or base64.b32encode(uuid.uuid4().bytes).decode().rstrip("=")[:16] + "="
    domain = domain_name or merged.get("host", "127.0.0.1").split(",")[0]
    merged.setdefault("x-forwarded-for", source_ip)
    merged.setdefault("x-forwarded-proto", "http")
    if ":" in domain:
        merged.setdefault("x-forwarded-port", domain.rsplit(":", 1)[1])
    merged.setdefault("x-amzn-trace-id", f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]}")

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = merged
    if raw_query:
        query: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": DEFAULT_ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0].split(":", 1)[0],
        "http": {
            "method": method.upper(),
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body:
        binary = is_binary_content_type(merged.get("content-type"))
        if not binary:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                binary = True
        if binary:
            event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = binary
    else:
        event["isBase64Encoded"] = False
    return event


def to_http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Turn a handler's return value into (status, headers, body) the way API Gateway v2 does."""
    if isinstance(result, dict) and "statusCode" in result:
        status = int(result["statusCode"])
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(v)) for v in values)
        headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
        body = result.get("body")
        if body is None:
            data = b""
        elif result.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        return status, headers, data
    # Anything else: 200, JSON, the value itself (a string is passed as it is).
    data = (result if isinstance(result, str) else json.dumps(result)).encode("utf-8")
    return 200, [("Content-Type", "application/json")], data


def _error_summary(body: bytes) -> str:
    """ ": <message> (<field>: <detail>, ...)" of an answer in the relay's error shape, else ""."""
    try:
        error = json.loads(body)["error"]
        details = [f"{d.get('field')}: {d.get('message')}" for d in error.get("details") or []]
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
    return f" {error.get('code')}: " + ("; ".join(details) if details else str(error.get("message")))


def _json_error(status: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps({"message": message}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: GatewayServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self._send(*_json_error(400, "Bad Request"))
            return
        if body is None:
            self.close_connection = True
            self._send(*_json_error(413, "Request Entity Too Large"))
            return
        path_only = urlsplit(self.path).path or "/"
        match = self.server.router.match(self.command, path_only)
        if match is None:
            self._send(*_json_error(404, "Not Found"))
            return
        route, params = match
        event = build_http_event(
            self.command,
            self.path,
            list(self.headers.items()),
            body,
            route.route_key,
            params,
            source_ip=self.client_address[0],
            domain_name=self.headers.get("Host") or f"127.0.0.1:{self.server.server_port}",
        )
        try:
            response = to_http_response(route.target(event))
        except Exception:
            sys.stderr.write(f"[relay-local] {route.name} failed on {route.route_key}:\n")
            traceback.print_exc(file=sys.stderr)
            response = _json_error(500, "Internal Server Error")
        if response[0] >= 400:  # the function logs what it accepts; make dev shows refusals too
            log.info("%s %s answered %d%s", self.command, path_only, response[0], _error_summary(response[2]))
        self._send(*response)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        names = {name.lower() for name, _ in headers}
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        if "date" not in names:
            self.send_header("Date", formatdate(usegmt=True))
        self.send_header("Apigw-Requestid", uuid.uuid4().hex[:16])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, PROPFIND, ...) is routed like the rest: API Gateway answers
        # 404 for a method no route declares, where http.server would answer 501.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def version_string(self) -> str:
        return "relay-local"


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, router: Router, host: str = "127.0.0.1", port: int = 0) -> None:
        self.router = router
        super().__init__((host, port), _Handler)


class Gateway:
    """The local HTTP API. ``start()`` serves in a thread; ``url`` is where."""

    def __init__(self, routes: Iterable[Route], host: str = "127.0.0.1", port: int = 0) -> None:
        self.router = Router(routes)
        self.host = host
        self.port = port
        self._server: GatewayServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("gateway not started")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> Gateway:
        self._server = GatewayServer(self.router, self.host, self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="relay-gateway",
            daemon=True,
        )
        self._thread.start()
        log.info("HTTP API on %s (%d routes)", self.url, len(self.router.routes))
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
