"""What every trigger route shares before it accepts: the body's hash, the execution id fixed by
an Idempotency-Key, and the two ways a keyed request can be refused."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

_EXECUTION_NAMESPACE = uuid.UUID("5b7b7f0e-9a53-4f4c-8d0e-3f1b1f6c2a11")


class IdempotencyConflict(Exception):
    """Same Idempotency-Key, different body."""


class IdempotencyInProgress(Exception):
    """Another request with the same key is still being processed."""


def body_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def execution_id_for(idempotency_key: str | None, caller: str, scope: str = "") -> str:
    """Deterministic for a keyed request, so a retry after a crash lands on the same records.

    ``scope`` (the route) keeps one key on two routes two requests. The empty scope is the
    derivation from before routes were scoped: the first trigger route keeps it, so a client's
    retry across an upgrade still lands on the execution its first attempt wrote."""
    if idempotency_key:
        name = f"{scope}\n{caller}\n{idempotency_key}" if scope else f"{caller}\n{idempotency_key}"
        return str(uuid.uuid5(_EXECUTION_NAMESPACE, name))
    return str(uuid.uuid4())
