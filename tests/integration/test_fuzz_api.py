"""Property-based fuzzing of the whole HTTP API with schemathesis, from ``GET /v1/openapi.json``.

Every operation of the document gets ``RELAY_FUZZ_MAX_EXAMPLES`` generated cases that fit its
schema and as many that do not (wrong types, values out of range, missing or unknown fields), sent
to the shared local stack with its API key. Each answer must not be a 5xx, must be a status the
document declares for that operation, and must match the schema declared for it.

Deterministic: a fixed seed (``RELAY_FUZZ_SEED``; Hypothesis derandomized, no example database),
bounded examples per operation and a time budget (``RELAY_FUZZ_SECONDS``, default 60, shared by the
operations: each gets an equal share of what is left; cases past it are generated but not sent).
A failure names the operation and prints the request as a curl command. A longer run:

    RELAY_FUZZ_SECONDS=900 RELAY_FUZZ_MAX_EXAMPLES=500 RELAY_FUZZ_SEED=7 \\
        .venv/bin/python -m pytest tests/integration/test_fuzz_api.py

Schemathesis's own pytest loader (``schemathesis.pytest.from_fixture``) needs a pytest internal
that pytest 9.2 removed, so the cases come from its Python API (``APIOperation.as_strategy``,
``Case.call_and_validate``) under Hypothesis's ``given``.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import time
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from conftest import relay_env
from relay.results.signatures import standard_headers
from relay_local.stack import LocalStack
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NotSet
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("RELAY_FUZZ_SECONDS", "60"))
MAX_EXAMPLES = int(os.environ.get("RELAY_FUZZ_MAX_EXAMPLES", "50"))
SEED = int(os.environ.get("RELAY_FUZZ_SEED", "20261202"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
WEBHOOK_PATH = "/v1/webhooks/optimized"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"fuzzing-secret-fuzzing-secret-32").decode()


class Budget:
    """What was sent within each operation's share of the time budget, and what was not."""

    def __init__(self) -> None:
        self.sent: collections.Counter[str] = collections.Counter()
        self.unsent: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()

    def allows(self, label: str, deadline: float) -> bool:
        if time.monotonic() <= deadline:
            self.sent[label] += 1
            return True
        self.unsent[label] += 1
        return False

    def report(self, operations: int, failures: int) -> str:
        lines = [
            f"fuzzing: {operations} operations, {sum(self.sent.values())} cases sent, "
            f"{sum(self.unsent.values())} past the time budget, {failures} failing; "
            f"statuses {dict(sorted(self.statuses.items()))}"
        ]
        lines += [f"  {label}: {self.sent[label]} sent" for label in sorted(self.sent)]
        return "\n".join(lines)


def _schema(stack: LocalStack) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": stack.api_url,
            "headers": {"Authorization": f"Bearer {stack.api_key}"},
            "request-timeout": 30,
        }
    )
    return schemathesis.openapi.from_url(f"{stack.api_url}/v1/openapi.json", config=config, timeout=30)


def _signed(case: Any) -> dict[str, Any]:
    """A webhook case goes out signed with the stack's secret (the body as the bytes signed), so
    its body reaches the parsing and storing behind the signature check; other cases as they are.
    (Refused signatures are tested in test_results_webhooks.py.)"""
    if case.operation.path != WEBHOOK_PATH:
        return {}
    if isinstance(case.body, NotSet):
        body = b""
    elif isinstance(case.body, bytes | str):  # a negative case: raw bytes rather than JSON
        body = case.body if isinstance(case.body, bytes) else case.body.encode()
    else:
        body = json.dumps(case.body).encode()
    msg_id = f"msg_fuzz_{time.monotonic_ns()}"
    signed = standard_headers(WEBHOOK_SECRET, msg_id, int(time.time()), body)
    return {"data": body, "headers": {"Content-Type": "application/json", **signed}}


def _fuzz(operation: Any, mode: GenerationMode, budget: Budget, deadline: float) -> str | None:
    """Run one operation's cases of one mode; the failure report, or None."""
    settings = hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: bounded time
        suppress_health_check=list(hypothesis.HealthCheck),
        print_blob=False,
    )

    @settings
    @hypothesis.seed(SEED)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        if not budget.allows(operation.label, deadline):
            return
        response = case.call_and_validate(checks=CHECKS, **_signed(case))
        budget.statuses[response.status_code] += 1

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        return None  # nothing to get wrong: an operation without inputs has no negative cases
    except (FailureGroup, Exception) as exc:  # a check failed (a BaseExceptionGroup), or the call raised
        return f"{operation.label} ({mode.value}): {exc}"
    return None


def test_no_input_gets_a_server_error_or_an_undeclared_answer(relay: LocalStack) -> None:
    schema = _schema(relay)
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    # Every operation but the document's own GET, which schemathesis leaves out when it loads it.
    assert len(operations) >= 12, [operation.label for operation in operations]
    budget = Budget()
    runs = [(operation, mode) for operation in operations for mode in GenerationMode]
    ends = time.monotonic() + SECONDS
    failures = []
    with relay_env(WEBHOOK_SECRET=WEBHOOK_SECRET):
        for index, (operation, mode) in enumerate(runs):
            share = (ends - time.monotonic()) / (len(runs) - index)
            failure = _fuzz(operation, mode, budget, time.monotonic() + max(share, 0.0))
            if failure:
                failures.append(failure)
    print(budget.report(len(operations), len(failures)))  # shown with -s or -rA
    assert not failures, "\n\n".join(failures)
