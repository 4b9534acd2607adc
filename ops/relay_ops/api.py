"""The relay's HTTP API for the `relay` command: answers as dicts, errors as the API's message."""

from __future__ import annotations

import time
from typing import Any

import httpx

# A trigger answered one of these is sent again with the same Idempotency-Key (safe: a repeat of a
# request the relay accepted returns its first answer): the relay or the network was unavailable,
# a conflict with a concurrent writer (503), or the same key still in progress (409 in_progress).
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRIED_CODES = frozenset({"in_progress"})


class RelayApiError(Exception):
    """An answer in the relay's error shape ``{"error": {code, message, details[]}}``."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []

    @property
    def retryable(self) -> bool:
        return self.status in RETRIED_STATUSES or self.code in RETRIED_CODES

    def lines(self) -> list[str]:
        out = [f"{self.message} ({self.status} {self.code})" if self.status else self.message]
        for detail in self.details:
            field = detail.get("field")
            out.append(f"  {field}: {detail.get('message')}" if field else f"  {detail.get('message')}")
        return out

    @classmethod
    def from_response(cls, response: httpx.Response) -> RelayApiError:
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict) or "message" not in error:
            text = response.text.strip()[:200] or response.reason_phrase
            return cls(response.status_code, "unexpected_answer", f"the relay answered {text!r}")
        return cls(response.status_code, str(error.get("code")), str(error["message"]), error.get("details"))


class Unreachable(RelayApiError):
    def __init__(self, url: str, exc: Exception) -> None:
        super().__init__(0, "unreachable", f"cannot reach the relay at {url}: {exc}")

    @property
    def retryable(self) -> bool:
        return True


class RelayApi:
    def __init__(self, url: str, key: str, *, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}", "User-Agent": "relay-cli"},
            timeout=timeout_s,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RelayApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(self.url, exc) from None
        if response.status_code >= 400:
            raise RelayApiError.from_response(response)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post_keyed(
        self,
        path: str,
        body: dict[str, Any],
        key: str,
        *,
        attempts: int = 6,
        sleep: Any = time.sleep,
    ) -> dict[str, Any]:
        """POST a trigger with its Idempotency-Key; what may be retried is, with back-off."""
        delay = 0.5
        for attempt in range(1, attempts + 1):
            try:
                return self.call("POST", path, json=body, headers={"Idempotency-Key": key})
            except RelayApiError as error:
                if not error.retryable or attempt == attempts:
                    raise
            sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")
