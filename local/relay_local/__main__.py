"""``relay-local`` (``make dev``): the whole relay on this machine until Ctrl-C.

It writes two files beside the virtualenv (``.venv/`` of the checkout): ``relay-local.env``, the
API's URL and key and the webhook secret as shell ``export`` lines for the README's examples (``.
.venv/relay-local.env``), removed on exit; and ``relay-local.log``, every line the functions printed,
as JSON, while the terminal gets one short line per event (:mod:`relay_local.devlog`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from relay_ops import target

from relay_local import lambdas, sign
from relay_local.devlog import DevLog, LocalFormatter
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


def env_file_text(stack: LocalStack) -> str:
    """What ``. .venv/relay-local.env`` sets: where the API is, its key, the webhook secret."""
    values = {
        "RELAY_API_URL": stack.api_url,
        "RELAY_API_KEY": stack.api_key,
        "WEBHOOK_SECRET": os.environ.get("WEBHOOK_SECRET", ""),
    }
    lines = ["# written by make dev (relay-local) while it runs; . .venv/relay-local.env"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by this user only: it holds the API key and the webhook secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def banner(
    stack: LocalStack, upstream: str, log_path: Path | None = None, env_path: Path | None = None
) -> str:
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
            *(
                [f"  Full logs:      {log_path} (JSON lines; one short line per event below)"]
                if log_path
                else []
            ),
            *(
                [f"  For your shell: . {env_path}   (RELAY_API_URL, RELAY_API_KEY, WEBHOOK_SECRET)"]
                if env_path
                else []
            ),
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LocalFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
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
    venv = stack.template_path.parent / ".venv"
    log_path = venv / "relay-local.log"
    env_path = venv / "relay-local.env"
    devlog = DevLog(log_path)
    lambdas.set_output_sink(devlog)
    env_text = ""
    try:
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
            env_text = env_file_text(stack)
            write_private(env_path, env_text)
            print(banner(stack, upstream, log_path, env_path), flush=True)
            while not stopping.wait(0.5):
                pass
            logging.getLogger("relay_local").info("stopping")
        finally:
            stack.stop()
    finally:
        lambdas.set_output_sink(None)
        devlog.close()
        # Another make dev of the same checkout may have written its own since: leave that one.
        with contextlib.suppress(OSError):
            if env_text and env_path.read_text() == env_text:
                env_path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
