"""``relay-sign``: sign a JSON file as Optimized.app would (as the relay assumes it does) and print
a ready curl command for the local stack's ``POST /v1/webhooks/optimized``.

    relay-sign event.json                      # WEBHOOK_SECRET from the environment
    relay-sign event.json --secret whsec_...   # or given
    relay-sign event.json --headers            # just the headers, one per line

The body is sent byte for byte as it is in the file (``--data-binary @file``): the signature
covers the raw bytes, so the file must not be re-serialised on the way.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shlex
import sys
import time
import uuid
from pathlib import Path

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


SAMPLE_EVENT = "events/webhook-optimized-sms-delivered.json"


def ensure_dev_secrets() -> None:
    """``make dev``: invent the webhook secrets the user did not set (printed in the banner)."""
    os.environ.setdefault("WEBHOOK_SECRET", "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    if os.environ.get("RESULTS_WEBHOOK_URL") and not os.environ.get("RESULTS_WEBHOOK_SECRET"):
        os.environ["RESULTS_WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def banner_lines(api_url: str) -> list[str]:
    """What the local stack's banner says about inbound and forwarded results."""
    secret = os.environ.get("WEBHOOK_SECRET", "").split(",")[0].strip()
    results_url = os.environ.get("RESULTS_WEBHOOK_URL", "").strip()
    forwarding = (
        f"to {results_url}, signed with RESULTS_WEBHOOK_SECRET={os.environ.get('RESULTS_WEBHOOK_SECRET', '')}"
        if results_url
        else "off (set RESULTS_WEBHOOK_URL, and optionally RESULTS_WEBHOOK_SECRET, before make dev)"
    )
    return [
        "Send a signed Optimized.app result (put a batch_uuid from the execution in the file first):",
        f"  export WEBHOOK_SECRET={secret}",
        f"  relay-sign {SAMPLE_EVENT} --url {api_url} | sh",
        f"Results: GET {api_url}/v1/executions/<execution_id>/results",
        f"  and those that matched nothing: GET {api_url}/v1/results?unmatched=true",
        f"Forwarding: {forwarding}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay-sign", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="JSON file: one event or an array of events")
    parser.add_argument("--secret", default=None, help="default: the first of WEBHOOK_SECRET")
    parser.add_argument(
        "--scheme", choices=("standard", "hmac"), default=os.environ.get("WEBHOOK_SCHEME", "standard")
    )
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('RELAY_LOCAL_PORT', '3000')}")
    parser.add_argument("--id", dest="msg_id", default=None, help="webhook-id (default: a new one)")
    parser.add_argument("--headers", action="store_true", help="print only the headers")
    args = parser.parse_args(argv)
    secret = args.secret or next(
        (s.strip() for s in os.environ.get("WEBHOOK_SECRET", "").split(",") if s.strip()), None
    )
    if not secret:
        parser.error("no secret: pass --secret or set WEBHOOK_SECRET (the one the local stack printed)")
    body = args.file.read_bytes()
    headers = signed_headers(body, secret, scheme=args.scheme, msg_id=args.msg_id)
    if args.headers:
        for name, value in headers.items():
            print(f"{name}: {value}")
        return 0
    parts = ["curl", "-s", "-X", "POST", f"{args.url.rstrip('/')}/v1/webhooks/optimized"]
    parts += ["-H", "Content-Type: application/json"]
    for name, value in headers.items():
        parts += ["-H", f"{name}: {value}"]
    parts += ["--data-binary", f"@{args.file}"]
    print(shlex.join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
