"""``relay sign``: sign a JSON file as Optimized.app would (as the relay assumes it does) and send it
to the relay's ``POST /v1/webhooks/optimized``, or print a ready curl command for it.

    relay sign event.json --send               # signed and sent; the answer printed, exit 1 if refused
    relay sign event.json                      # the curl command
    relay sign event.json --secret whsec_...   # default: the local stack's, or WEBHOOK_SECRET
    relay sign event.json --headers            # just the headers, one per line

(``relay-sign``, its name before `relay`, is the same command.)

The body is sent byte for byte as it is in the file (``--data-binary @file``): the signature
covers the raw bytes, so the file must not be re-serialised on the way.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import uuid

from relay.results.signatures import hmac_signature, standard_headers


def signed_headers(
    body: bytes,
    secret: str,
    *,
    scheme: str = "standard",
    msg_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Headers that make ``body`` pass the relay's verification under ``secret``."""
    if scheme == "standard":
        return standard_headers(
            secret, msg_id or f"msg_{uuid.uuid4().hex}", timestamp or int(time.time()), body
        )
    header = os.environ.get("WEBHOOK_HMAC_HEADER", "x-signature")
    signature = hmac_signature(
        secret,
        body,
        algorithm=os.environ.get("WEBHOOK_HMAC_ALGORITHM", "sha256"),
        encoding=os.environ.get("WEBHOOK_HMAC_ENCODING", "hex"),
    )
    return {header: os.environ.get("WEBHOOK_HMAC_PREFIX", "") + signature}


def curl_command(url: str, path: str, headers: dict[str, str]) -> str:
    parts = ["curl", "-s", "-X", "POST", f"{url.rstrip('/')}/v1/webhooks/optimized"]
    parts += ["-H", "Content-Type: application/json"]
    for name, value in headers.items():
        parts += ["-H", f"{name}: {value}"]
    parts += ["--data-binary", f"@{path}"]
    return shlex.join(parts)


def main(argv: list[str] | None = None) -> int:
    """``relay-sign``: the name `relay sign` had before, kept working."""
    from relay_ops.cli import main as relay

    return relay(["sign", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
