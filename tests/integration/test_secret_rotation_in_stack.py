"""Secrets rotate without failing work, over the local stack with its secrets in (moto's) Secrets
Manager, as in AWS: the functions read them through Powertools Parameters' cache.

* The Optimized.app token is rotated mid-run (the new value put in Secrets Manager, the sandbox
  taking only the new one from then on): a warm dispatcher still holding the old token in its
  cache gets a 401, reads the secret again past the cache and sends with the new one - nothing
  fails.
* The inbound webhook secret is rotated with a short cache age (RELAY_SECRET_MAX_AGE_S=1): a warm
  webhooks function accepts the new secret once its cache age has passed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from conftest import Api, batches_for, relay_env, wait_for
from relay.results.signatures import standard_headers
from relay_local import aws
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def secretsmanager(relay: LocalStack) -> Any:
    return boto3.client(
        "secretsmanager", endpoint_url=relay.moto_endpoint, region_name="us-east-1", **aws.DUMMY_CREDENTIALS
    )


@pytest.fixture
def sandbox_token(relay: LocalStack) -> Iterator[str]:
    before = relay.sandbox.token
    yield before
    relay.sandbox.token = before


def test_the_optimized_token_is_rotated_mid_run_and_nothing_fails(
    relay: LocalStack, api: Api, group: str, secretsmanager: Any, sandbox_token: str
) -> None:
    name = f"relay/optimized-token-{uuid.uuid4().hex[:8]}"
    secretsmanager.create_secret(Name=name, SecretString=sandbox_token)
    # Deployed form: no plain token, the secret's name (cache age: the default 300 s). The held
    # request below must not time out meanwhile.
    with relay_env(OPTIMIZED_API_TOKEN="", OPTIMIZED_API_TOKEN_SECRET=name, OPTIMIZED_READ_TIMEOUT_S="20"):
        first = api.trigger(group, 3).json()["execution_id"]
        assert api.wait(first)["status"] == "completed"  # a warm dispatcher, the token cached
        assert {b.token for b in batches_for(relay, group)} == {sandbox_token}
        before = len(batches_for(relay, group))

        # Mid-run: the batch request is on its way with the old token when the secret is rotated
        # and the upstream switches to the new one.
        hold = relay.sandbox.hold_next()
        second = api.trigger(group, 3).json()["execution_id"]
        assert hold.wait_arrived(30), "the batch request never reached the sandbox"
        rotated = f"rotated-{uuid.uuid4().hex}"
        secretsmanager.put_secret_value(SecretId=name, SecretString=rotated)
        relay.sandbox.token = rotated
        hold.release()
        done = api.wait(second)
    assert done["status"] == "completed", done
    assert done["profiles"].get("failed", 0) == 0
    after = batches_for(relay, group)[before:]
    # The held request was refused (401), the secret read again past its cache, and the batch sent
    # once more with the new token: exactly one retry.
    assert [(b.status, b.token) for b in after] == [(401, sandbox_token), (201, rotated)]
    assert len(after[1].profiles) == 3


def _post(stack: LocalStack, secret: str, event_id: str) -> httpx.Response:
    body = json.dumps({"id": event_id, "type": "sms.delivered"}).encode()
    headers = {
        "content-type": "application/json",
        **standard_headers(secret, f"msg_{event_id}", int(time.time()), body),
    }
    return httpx.post(f"{stack.api_url}/v1/webhooks/optimized", content=body, headers=headers, timeout=30)


def test_a_rotated_webhook_secret_reaches_a_warm_function_after_its_cache_age(
    relay: LocalStack, secretsmanager: Any
) -> None:
    old = "whsec_" + base64.b64encode(b"the-old-webhook-secret-000000000").decode()
    new = "whsec_" + base64.b64encode(b"the-new-webhook-secret-000000000").decode()
    name = f"relay/webhook-secret-{uuid.uuid4().hex[:8]}"
    secretsmanager.create_secret(Name=name, SecretString=old)
    with relay_env(WEBHOOK_SECRET="", WEBHOOK_SECRET_NAME=name, RELAY_SECRET_MAX_AGE_S="1"):
        assert _post(relay, old, "r-1").status_code == 202  # the function is warm, the secret cached
        secretsmanager.put_secret_value(SecretId=name, SecretString=new)
        # No configuration update, no new instance: the new secret is accepted once the cached
        # value is older than RELAY_SECRET_MAX_AGE_S.
        attempt = iter(range(1000))
        wait_for(
            lambda: _post(relay, new, f"r-2-{next(attempt)}").status_code == 202,
            timeout=15,
            what="new secret",
        )
        assert _post(relay, old, "r-3").status_code == 401
