"""What ``make dev`` says and sets up about inbound webhooks: the secrets it invents and the lines of
its banner that show how to send a signed result (``relay sign``, in ``ops/relay_ops/sign.py``)."""

from __future__ import annotations

import base64
import os
import secrets

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
        "Send a signed Optimized.app result (put a batch_uuid from the execution in the file first;",
        f"  the relay command signs with this stack's WEBHOOK_SECRET={secret}):",
        f"  .venv/bin/relay sign {SAMPLE_EVENT} --send",
        f"Results: GET {api_url}/v1/executions/<execution_id>/results",
        f"  and those that matched nothing: GET {api_url}/v1/results?unmatched=true",
        f"Forwarding: {forwarding}",
    ]
