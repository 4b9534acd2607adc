"""Webhook signatures, verified on the raw request bytes (never on re-serialised JSON).

Two schemes, because the platform's own is not public:

* Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` (several
  space-separated signatures allowed), timestamp checked against a tolerance both ways.
* Plain HMAC of the body in one header (hex or base64, sha256 or sha1, optional prefix such as
  ``sha256=``) for when the platform's real scheme turns out to be that.

Several secrets may be configured at once (rotation); every comparison is constant-time and every
secret/signature pair is tried, so timing says nothing about which one matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret


class SignatureError(Exception):
    """The request is not signed by anyone we trust (the reason is safe to log)."""


def secret_bytes(secret: str) -> bytes:
    """``whsec_<base64>`` -> its decoded key; any other string -> its UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from exc
    return secret.encode()


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items()}


def standard_signature(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message under one secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_headers(secret: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers of an outbound Standard Webhooks request: one ``v1,<sig>`` per secret,
    space-separated (while a secret is rotated the receiver may know either one)."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("no secret to sign with")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(standard_signature(s, msg_id, timestamp, body) for s in secrets),
    }


def verify_standard(
    headers: Mapping[str, str] | None, body: bytes, secrets: Sequence[str], *, tolerance_s: int, now: float
) -> str:
    """The verified ``webhook-id``, or SignatureError."""
    h = lower_headers(headers)
    msg_id, timestamp, signatures = (
        h.get("webhook-id"),
        h.get("webhook-timestamp"),
        h.get("webhook-signature"),
    )
    if not msg_id or not timestamp or not signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(timestamp.strip())
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    if ts < now - tolerance_s:
        raise SignatureError("webhook-timestamp is too old")
    if ts > now + tolerance_s:
        raise SignatureError("webhook-timestamp is too far in the future")
    offered = [s.partition(",")[2].encode() for s in signatures.split() if s.startswith("v1,")]
    if not offered:
        raise SignatureError("no v1 signature in webhook-signature")
    matched = False
    for secret in secrets:
        expected = standard_signature(secret, msg_id, timestamp.strip(), body).partition(",")[2].encode()
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no signature matches")
    return msg_id


def hmac_signature(secret: str, body: bytes, *, algorithm: str, encoding: str) -> str:
    digest = hmac.new(secret_bytes(secret), body, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def verify_hmac(
    headers: Mapping[str, str] | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    header: str,
    algorithm: str,
    encoding: str,
    prefix: str = "",
) -> None:
    value = lower_headers(headers).get(header.lower(), "").strip()
    if prefix and value.startswith(prefix):
        value = value[len(prefix) :]
    if not value:
        raise SignatureError(f"missing {header}")
    # Hex is compared case-insensitively; several signatures may be comma-separated.
    offered = [v.strip().lower() if encoding == "hex" else v.strip() for v in value.split(",") if v.strip()]
    matched = False
    for secret in secrets:
        expected = hmac_signature(secret, body, algorithm=algorithm, encoding=encoding)
        for candidate in offered:
            matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise SignatureError("no signature matches")


@dataclass(frozen=True)
class Verifier:
    """The configured inbound scheme; ``verify`` returns the delivery id when the scheme has one."""

    secrets: tuple[str, ...]
    scheme: Literal["standard", "hmac"] = "standard"
    tolerance_s: int = 300
    hmac_header: str = "x-signature"
    hmac_algorithm: str = "sha256"
    hmac_encoding: str = "hex"
    hmac_prefix: str = ""

    def verify(self, headers: Mapping[str, str] | None, body: bytes, now: float) -> str | None:
        if not self.secrets:
            # Fail closed: an unconfigured secret must never mean "accept anything".
            raise SignatureError("no webhook secret is configured")
        if self.scheme == "standard":
            return verify_standard(headers, body, self.secrets, tolerance_s=self.tolerance_s, now=now)
        verify_hmac(
            headers,
            body,
            self.secrets,
            header=self.hmac_header,
            algorithm=self.hmac_algorithm,
            encoding=self.hmac_encoding,
            prefix=self.hmac_prefix,
        )
        return None
