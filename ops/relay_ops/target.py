"""Which relay the `relay` command talks to, and what it needs of it: the API's URL and key, and
for the commands that read AWS directly (`relay dlq`) the region, endpoint and resources.

Found, each part overridden by the next:

1. a running local stack (`make dev`): it writes what the command needs to a file in the repo's
   ``.venv`` (``relay-local.json``, readable by the user only, removed when it stops);
2. ``--stack-name``: a deployed stack's CloudFormation outputs (``ApiUrl``, ``TableName``, every
   queue's URL) and the API key from the secret its ``RelayApiKeysSecretName`` parameter names;
3. the environment: ``RELAY_API_URL``, ``RELAY_API_KEY``, ``AWS_*`` and the functions' own
   resource variables (``DISPATCH_DLQ_URL``, ...);
4. ``--api-url`` / ``--api-key``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where `make dev` leaves its address for the command (RELAY_LOCAL_STATE overrides it: tests).
STATE_FILE_ENV = "RELAY_LOCAL_STATE"
STATE_FILE_NAME = "relay-local.json"
_REPO = Path(__file__).resolve().parents[2]

# The environment the command keeps from a local stack or a stack's outputs, and takes from the
# user's environment over them.
AWS_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
_RESOURCE = re.compile(r"^[A-Z0-9_]+(_QUEUE_URL|_DLQ_URL|_TABLE_NAME)$")


class TargetError(Exception):
    """No relay could be found, or a stack could not be read: said as a sentence."""


def is_resource_variable(name: str) -> bool:
    return bool(_RESOURCE.match(name))


@dataclass
class Target:
    api_url: str | None = None
    api_key: str | None = None
    source: str = "environment"
    # AWS access and resources, as the functions' environment names them.
    environment: dict[str, str] = field(default_factory=dict)
    webhook_secret: str | None = None

    def require_api(self) -> tuple[str, str]:
        if not self.api_url:
            raise TargetError(
                "no relay found: start the local stack (make dev), or give --stack-name, "
                "--api-url or RELAY_API_URL"
            )
        if not self.api_key:
            raise TargetError(f"no API key for {self.api_url}: give --api-key or RELAY_API_KEY")
        return self.api_url.rstrip("/"), self.api_key

    def aws_client(self, service: str) -> Any:
        """A boto3 client for this relay's AWS (the local stack's emulator, or the account)."""
        import boto3

        env = self.environment
        session = boto3.session.Session(
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        )
        if session.region_name is None:
            raise TargetError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or use --region")
        return session.client(service, endpoint_url=env.get("AWS_ENDPOINT_URL") or None)

    @property
    def emulated(self) -> bool:
        """Talking to the local stack's emulator (no SQS message-move tasks there)."""
        return bool(self.environment.get("AWS_ENDPOINT_URL"))


# --- The local stack's file -----------------------------------------------------------------------


def state_file() -> Path:
    override = os.environ.get(STATE_FILE_ENV)
    if override:
        return Path(override)
    for root in (_REPO, Path.cwd()):
        candidate = root / ".venv" / STATE_FILE_NAME
        if candidate.is_file():
            return candidate
    return _REPO / ".venv" / STATE_FILE_NAME


def write_state(
    path: Path, *, api_url: str, api_key: str, environment: dict[str, str], webhook_secret: str | None
) -> None:
    """Written by the local stack once it is up (only the user can read it: it holds the key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "pid": os.getpid(),
        "api_url": api_url,
        "api_key": api_key,
        "webhook_secret": webhook_secret,
        "environment": environment,
    }
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(body, out, indent=2)
    temporary.replace(path)


def remove_state(path: Path) -> None:
    """The local stack stops: its address goes with it (only if it is still this process's)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def from_local_state(path: Path | None = None) -> Target | None:
    path = path or state_file()
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(state.get("pid")):
        return None  # left by a local stack that was killed: nothing answers there
    return Target(
        api_url=state.get("api_url"),
        api_key=state.get("api_key"),
        source=f"the local stack ({path})",
        environment=dict(state.get("environment") or {}),
        webhook_secret=state.get("webhook_secret"),
    )


# --- A deployed stack -----------------------------------------------------------------------------


def output_variable(output_key: str) -> str | None:
    """The functions' environment variable an output of the template holds (None: not one):
    ``TableName`` -> RELAY_TABLE_NAME, ``DispatchDeadLetterQueueUrl`` -> DISPATCH_DLQ_URL,
    ``OptimoveQueueUrl`` -> OPTIMOVE_QUEUE_URL."""
    if output_key.endswith("TableName"):
        stem = output_key[: -len("TableName")]
        return "RELAY_TABLE_NAME" if not stem else f"RELAY_{_snake(stem)}_TABLE_NAME"
    for suffix, variable in (("DeadLetterQueueUrl", "_DLQ_URL"), ("QueueUrl", "_QUEUE_URL")):
        if output_key.endswith(suffix) and len(output_key) > len(suffix):
            return _snake(output_key[: -len(suffix)]) + variable
    return None


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()


API_KEYS_PARAMETER = "RelayApiKeysSecretName"


def from_stack(stack_name: str, region: str | None, *, with_key: bool) -> Target:
    """The stack's outputs; its API key from Secrets Manager unless one is given (``with_key``
    False): the caller's AWS credentials must allow cloudformation:DescribeStacks (and
    secretsmanager:GetSecretValue on that secret)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        raise TargetError("no AWS region for --stack-name: give --region or set AWS_REGION")
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise TargetError(f"cannot read stack {stack_name!r}: {exc}") from None
    stack = stacks[0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    environment = {"AWS_REGION": session.region_name, "AWS_DEFAULT_REGION": session.region_name}
    for key, value in outputs.items():
        variable = output_variable(key)
        if variable:
            environment[variable] = value
    target = Target(
        api_url=outputs.get("ApiUrl"),
        source=f"stack {stack_name} ({session.region_name})",
        environment=environment,
    )
    if with_key:
        parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", [])}
        secret = parameters.get(API_KEYS_PARAMETER)
        if secret:
            try:
                value = session.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
            except (ClientError, BotoCoreError) as exc:
                raise TargetError(f"cannot read the API key secret {secret!r}: {exc}") from None
            target.api_key = next((k.strip() for k in value.split(",") if k.strip()), None)
    return target


# --- All of it ------------------------------------------------------------------------------------


def resolve(
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    stack_name: str | None = None,
    region: str | None = None,
) -> Target:
    env = os.environ
    key_given = api_key or env.get("RELAY_API_KEY")
    if stack_name:
        target = from_stack(
            stack_name,
            region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            with_key=not key_given,
        )
    else:
        target = from_local_state() or Target()
    # The user's environment over what was found - but a local stack's emulator keeps its own
    # endpoint, region and credentials unless the environment names another endpoint (a shell
    # set up for a real AWS account must not send the emulator's calls elsewhere).
    local = bool(target.environment.get("AWS_ENDPOINT_URL")) and not stack_name
    keep_aws = local and not env.get("AWS_ENDPOINT_URL")
    for name, value in env.items():
        if name in AWS_KEYS and (keep_aws or (stack_name and name == "AWS_ENDPOINT_URL")):
            continue
        if name in AWS_KEYS or is_resource_variable(name):
            target.environment[name] = value
    if region:
        target.environment["AWS_REGION"] = target.environment["AWS_DEFAULT_REGION"] = region
    if env.get("WEBHOOK_SECRET"):
        target.webhook_secret = env["WEBHOOK_SECRET"]
    if env.get("RELAY_API_URL"):
        target.api_url, target.source = env["RELAY_API_URL"], "RELAY_API_URL"
    if env.get("RELAY_API_KEY"):
        target.api_key = env["RELAY_API_KEY"]
    if api_url:
        target.api_url, target.source = api_url, "--api-url"
    if api_key:
        target.api_key = api_key
    return target
