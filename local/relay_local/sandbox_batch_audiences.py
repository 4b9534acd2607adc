"""The audience endpoints of the sandbox Batch (``/audiences/*``), as the sandbox server calls them.

What Batch documents, kept: custom-id audiences (name ``[A-Za-z0-9_-]``, at most 255 characters,
case-sensitive), ``/audiences/update`` (the last action per id wins), ``/audiences/replace``, at
most ``max_ids`` (10,000) ids a call, ``/audiences/remove``, ``/audiences/list`` paged with
``from``/``limit`` (at most 100) and ``has_more``/``next_from``, ``/audiences/view`` with an
``indexing_token``. Each write answers 202 ``{indexing_token}``; its token reads ``IN_PROGRESS``
(or ``in_progress_spelling``) until ``indexing_s`` after it arrived, then ``APPLIED``, or
``REPLACED`` when a later replace arrived before it was applied. Writes are applied in the order
they arrive. The 1 request/s limit is the server's (it counts every endpoint but profile updates).

Error codes the docs do not list (an existing name, an unknown audience, too many ids) are this
sandbox's own, in Batch's ``{error_code, error_message}`` shape.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
WRITES = ("/audiences/create", "/audiences/update", "/audiences/replace", "/audiences/remove")
READS = ("/audiences/list", "/audiences/view")
PATHS = WRITES + READS


@dataclass
class Audience:
    name: str
    display_name: str | None
    created: float
    updated: float
    ids: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Token:
    audience: str
    arrived_at: float
    replaced: bool = False


@dataclass
class AudienceCall:
    """One request the sandbox answered on an audience path."""

    path: str
    name: str | None
    ids: list[dict[str, Any]]
    arrived_at: float
    status: int
    indexing_token: str | None = None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error_code": code, "error_message": message}


def default_indexing_s() -> float:
    """How long a token stays in progress (``SANDBOX_BATCH_INDEXING_S``, 1 s by default)."""
    return float(os.environ.get("SANDBOX_BATCH_INDEXING_S") or 1.0)


class SandboxAudiences:
    def __init__(
        self,
        *,
        indexing_s: float | None = None,
        max_ids: int = 10_000,
        clock: Callable[[], float] = time.time,
    ):
        self.indexing_s = default_indexing_s() if indexing_s is None else indexing_s
        self.max_ids = max_ids
        self.in_progress_spelling = "IN_PROGRESS"
        self.clock = clock
        self.audiences: dict[str, Audience] = {}
        self.tokens: dict[str, Token] = {}
        self.calls: list[AudienceCall] = []
        self._lock = threading.Lock()

    # -- control ------------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.audiences.clear()
            self.tokens.clear()
            self.calls.clear()
            self.indexing_s, self.max_ids = default_indexing_s(), 10_000
            self.in_progress_spelling = "IN_PROGRESS"

    def writes(self, name: str | None = None) -> list[AudienceCall]:
        """Accepted writes (202), in arrival order."""
        with self._lock:
            return [c for c in self.calls if c.path in WRITES and c.status == 202 and name in (None, c.name)]

    def members(self, name: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self.audiences[name].ids) if name in self.audiences else {}

    # -- behaviour ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        """One request to an audience path (the server checked the keys and the 1 request/s limit,
        and injects faults: ``SandboxBatch.fail_next`` / ``hang_next`` with an audience path)."""
        with self._lock:
            now = self.clock()
            name = (body.get("name") if isinstance(body, dict) else None) or query.get("name")
            ids = body.get("ids") if isinstance(body, dict) and isinstance(body.get("ids"), list) else []
            if path in WRITES:
                answer = self._write(method, path, name, ids, body, now)
            elif path == "/audiences/list":
                answer = self._list(method, query)
            elif path == "/audiences/view":
                answer = self._view(method, query, now)
            else:
                answer = _error(404, "ROUTE_NOT_FOUND", f"no route {method} {path}")
            token = answer[1].get("indexing_token") if answer[0] == 202 else None
            self.calls.append(AudienceCall(path, name, list(ids), now, answer[0], token))
            return answer

    def _write(
        self, method: str, path: str, name: Any, ids: list, body: Any, now: float
    ) -> tuple[int, dict[str, Any]]:
        if method != "POST":
            return _error(405, "METHOD_NOT_ALLOWED", f"{path} takes POST")
        if not isinstance(name, str) or not NAME.match(name):
            return _error(400, "INVALID_PARAMETER", "name: [A-Za-z0-9_-], at most 255 characters")
        if len(ids) > self.max_ids:
            return _error(400, "TOO_MANY_IDS", f"at most {self.max_ids} ids a call")
        audience = self.audiences.get(name)
        if path == "/audiences/create":
            if body.get("type") != "custom_ids":
                return _error(400, "INVALID_PARAMETER", 'type: only "custom_ids" is supported')
            if audience is not None:
                return _error(400, "AUDIENCE_ALREADY_EXISTS", f"audience {name} exists")
            self.audiences[name] = Audience(name, body.get("display_name"), now, now)
        elif audience is None:
            return _error(404, "AUDIENCE_NOT_FOUND", f"no audience {name}")
        elif path == "/audiences/remove":
            del self.audiences[name]
        elif path == "/audiences/replace":
            for token in self.tokens.values():
                if token.audience == name and now < token.arrived_at + self.indexing_s:
                    token.replaced = True
            audience.ids = {m["id"]: m.get("attributes") or {} for m in ids}
            audience.updated = now
        else:
            for change in ids:  # in order: the last action per id wins
                if change.get("action") == "add":
                    audience.ids[change["id"]] = change.get("attributes") or {}
                elif change.get("action") == "remove":
                    audience.ids.pop(change["id"], None)
                else:
                    return _error(400, "INVALID_PARAMETER", "action: add or remove")
            audience.updated = now
        token = uuid.uuid4().hex
        self.tokens[token] = Token(name, now)
        return 202, {"indexing_token": token}

    def _state(self, token: Token, now: float) -> str:
        if token.replaced:
            return "REPLACED"
        return "APPLIED" if now >= token.arrived_at + self.indexing_s else self.in_progress_spelling

    def _summary(self, audience: Audience, state: str) -> dict[str, Any]:
        return {
            "name": audience.name,
            "display_name": audience.display_name,
            "type": "custom_ids",
            "nb_ids": len(audience.ids),
            "indexing_state": state,
            "created": _iso(audience.created),
            "updated": _iso(audience.updated),
        }

    def _list(self, method: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if method != "GET":
            return _error(405, "METHOD_NOT_ALLOWED", "/audiences/list takes GET")
        try:
            limit = int(query.get("limit") or 100)
        except ValueError:
            return _error(400, "INVALID_PARAMETER", "limit: a number")
        if not 1 <= limit <= 100:
            return _error(400, "INVALID_PARAMETER", "limit: 1 to 100")
        names = sorted(self.audiences)
        start = query.get("from")
        if start:
            names = [n for n in names if n >= start]
        page, rest = names[:limit], names[limit:]
        now = self.clock()
        audiences = [self._summary(self.audiences[n], self._latest_state(n, now)) for n in page]
        return 200, {
            "audiences": audiences,
            "count": len(self.audiences),
            "has_more": bool(rest),
            "next_from": rest[0] if rest else None,
        }

    def _latest_state(self, name: str, now: float) -> str:
        mine = [t for t in self.tokens.values() if t.audience == name]
        if any(self._state(t, now) not in ("APPLIED", "REPLACED") for t in mine):
            return self.in_progress_spelling
        return "APPLIED"

    def _view(self, method: str, query: dict[str, str], now: float) -> tuple[int, dict[str, Any]]:
        if method != "GET":
            return _error(405, "METHOD_NOT_ALLOWED", "/audiences/view takes GET")
        name = query.get("name") or ""
        audience = self.audiences.get(name)
        if audience is None:
            return _error(404, "AUDIENCE_NOT_FOUND", f"no audience {name}")
        token = self.tokens.get(query.get("indexing_token") or "")
        if query.get("indexing_token") and (token is None or token.audience != name):
            return _error(400, "INVALID_PARAMETER", "indexing_token: not a token of this audience")
        state = self._state(token, now) if token else self._latest_state(name, now)
        return 200, self._summary(audience, state)
