"""The sandbox Batch itself, over loopback with real httpx: what it enforces is what the relay's
tests and benchmarks rely on (200 operations a call, the updates bucket with its burst, 1 request
a second elsewhere, partial errors, 429 without Retry-After, both keys)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from relay_local.sandbox_batch import SandboxBatch

pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox() -> Iterator[SandboxBatch]:
    with SandboxBatch(rest_key="rk", project_key="pk", updates_per_s=5, updates_burst=10) as running:
        yield running


@pytest.fixture
def http(sandbox: SandboxBatch) -> Iterator[httpx.Client]:
    headers = {"Authorization": "Bearer rk", "X-Batch-Project": "pk"}
    with httpx.Client(base_url=sandbox.url, headers=headers, timeout=5) as client:
        yield client


def ops(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"identifiers": {"custom_id": f"u{i}"}, **extra} for i in range(n)]


def test_more_than_200_operations_is_a_400(http: httpx.Client) -> None:
    answer = http.post("/profiles/update", json=ops(201))
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "BAD_REQUEST"


def test_the_updates_bucket_allows_its_burst_then_429_without_retry_after(http: httpx.Client) -> None:
    assert http.post("/profiles/update", json=ops(10)).json() == {"code": "SUCCESS"}
    refused = http.post("/profiles/update", json=ops(3))
    assert refused.status_code == 429
    assert "retry-after" not in refused.headers
    assert refused.json()["error_code"] == "TOO_MANY_REQUESTS"


def test_one_update_per_distinct_profile(http: httpx.Client) -> None:
    same = [{"identifiers": {"custom_id": "u1"}, "attributes": {"n": i}} for i in range(10)]
    assert http.post("/profiles/update", json=same).status_code == 202  # one update, not ten
    assert http.post("/profiles/update", json=ops(9)).status_code == 202


def test_partial_errors_name_each_refused_operation(sandbox: SandboxBatch, http: httpx.Client) -> None:
    body = [
        {"identifiers": {"custom_id": "a"}},
        {"identifiers": {"custom_id": "b", "installation": "c"}},
        {"identifiers": {"custom_id": "d"}, "events": [{"name": "Bad Name"}]},
    ]
    answer = http.post("/profiles/update", json=body).json()
    assert answer["code"] == "SUCCESS_WITH_PARTIAL_ERRORS"
    assert [(e["bulk_index"], e["category"]) for e in answer["errors"]] == [(1, "identifiers"), (2, "events")]
    assert set(sandbox.profiles) == {"custom_id:a"}


def test_other_paths_allow_one_request_a_second_per_project(http: httpx.Client) -> None:
    first = http.get("/audiences/list")
    second = http.get("/audiences/list")
    assert first.status_code != 429
    assert second.status_code == 429
    assert "retry-after" not in second.headers


def test_both_keys_are_checked(sandbox: SandboxBatch) -> None:
    for headers in ({"Authorization": "Bearer rk", "X-Batch-Project": "other"}, {"X-Batch-Project": "pk"}):
        answer = httpx.post(f"{sandbox.url}/profiles/update", json=ops(1), headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error_code"] == "AUTHENTICATION_INVALID"


def test_forced_faults_come_first(sandbox: SandboxBatch, http: httpx.Client) -> None:
    sandbox.fail_next(503)
    sandbox.fail_next(429, headers={"Retry-After": "2"})
    assert http.post("/profiles/update", json=ops(1)).status_code == 503
    limited = http.post("/profiles/update", json=ops(1))
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")
    assert http.post("/profiles/update", json=ops(1)).status_code == 202
    sandbox.hang_next(1.0)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/profiles/update", json=ops(1, attributes={"late": True}), timeout=0.3)
    assert sandbox.profiles["custom_id:u0"]["attributes"] == {"late": True}  # applied all the same
