"""boto3 clients, created once per process and shared (boto3 clients are thread-safe).

They honour ``AWS_ENDPOINT_URL``, which is how the local stack and the tests point them at moto.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)


def reset_clients() -> None:
    client.cache_clear()
