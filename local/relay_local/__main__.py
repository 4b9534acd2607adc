"""``relay-local`` (``make dev``): the whole relay on this machine until Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

from relay_ops import target

from relay_local import sign
from relay_local.stack import LocalStack

SAMPLE_GROUP_ID = "cc6cdf44-acf4-4b39-bd17-55b70b769812"
BATCH_SAMPLE = (
    '{"operations":[{"identifiers":{"custom_id":"crm-1"},"attributes":{"$email_marketing":"subscribed",'
    '"plan":"gold"},"ref":"crm-1"}]}'
)
OPTIMOVE_SAMPLE = (
    '{"event_generator_id":"00000000-abcd-abcd-abcd-000000000000","topic_key":"match-reminders",'
    '"context":{"match_id":"m-1","match_name":"Arsenal vs Chelsea"}}'
)


def batch_upstream(stack: LocalStack) -> str:
    if stack.sandbox_batch is not None:
        return f"sandbox at {stack.sandbox_batch.url} (documented limits enforced)"
    return f"{os.environ.get('BATCH_API_URL')} (BATCH_API_URL)"


def banner(stack: LocalStack, upstream: str) -> str:
    url, key = stack.api_url, stack.api_key
    body = (
        '{"group_id":"' + SAMPLE_GROUP_ID + '","profiles":[{"person":{"first_name":"Jane",'
        '"phone_number":"+35840123456"},"ref":"crm-1"}]}'
    )
    return "\n".join(
        [
            "",
            "campaign relay - local stack",
            f"  API:            {url}",
            f"  API key:        {key}",
            f"  Optimized.app:  {upstream}",
            f"  Batch.com:      {batch_upstream(stack)}",
            f"  AWS (moto):     {stack.moto_endpoint}",
            "",
            "Send a trigger:",
            f'  curl -s -X POST {url}/v1/optimized/triggers -H "Authorization: Bearer {key}" '
            f"-H \"Content-Type: application/json\" -d '{body}'",
            'Run an Optimove campaign (add "send_at":"2030-01-01T09:00:00","timezone":"Europe/Helsinki" '
            'to schedule it, "dedupe_key" to de-duplicate):',
            f'  curl -s -X POST {url}/v1/optimove/triggers -H "Authorization: Bearer {key}" '
            f"-H \"Content-Type: application/json\" -d '{OPTIMOVE_SAMPLE}'",
            "Update Batch.com profiles (any number of operations):",
            f'  curl -s -X POST {url}/v1/batch/profiles -H "Authorization: Bearer {key}" '
            f"-H \"Content-Type: application/json\" -d '{BATCH_SAMPLE}'",
            "Then look it up with the execution_id from the answer:",
            f'  curl -s {url}/v1/executions/<execution_id> -H "Authorization: Bearer {key}"',
            "Or operate it with the relay command (it finds this stack by itself):",
            "  .venv/bin/relay status      .venv/bin/relay watch      .venv/bin/relay --help",
            *sign.banner_lines(url),
            "",
            "Ctrl-C to stop.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    port = int(os.environ.get("RELAY_LOCAL_PORT", "3000"))
    template = os.environ.get("RELAY_LOCAL_TEMPLATE", "template.yaml")
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sign.ensure_dev_secrets()
    # The `relay` command finds this stack through this file (removed when the stack stops).
    stack = LocalStack(template_path=template, api_port=port, state_file=target.state_file())
    try:
        stack.start()
    except OSError as exc:
        logging.getLogger("relay_local").error("cannot start the local stack: %s", exc)
        stack.stop()
        return 1
    try:
        upstream = (
            f"sandbox at {stack.sandbox.url} (documented limits enforced)"
            if stack.sandbox is not None
            else f"{os.environ.get('OPTIMIZED_API_URL')} (OPTIMIZED_API_URL)"
        )
        print(banner(stack, upstream), flush=True)
        while not stopping.wait(0.5):
            pass
        logging.getLogger("relay_local").info("stopping")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
