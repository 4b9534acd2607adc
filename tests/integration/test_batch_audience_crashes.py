"""Audiences: a crash at every failpoint between two side effects, then what Lambda, SQS, the API
client and the reconciler do: every write completes or ends visibly (`ambiguous`, `failed`), the
audience's writes still reach Batch in the order they were accepted, and no call is made twice.

``crash_at(name)`` arms the failpoint until it fired; what follows the block is the recovery, on
instances started without it. Redelivery is compressed (the Batch queue's visibility timeout, 2 s),
so are the reconciler's staleness and a claimed call's (1 s); every wait has a deadline."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Api, crash_at, relay_env, scan_all, wait_for
from relay_local.stack import LocalStack
from test_batch_audience_flows import FAST, audience_writes, create, done, name, replace, update

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def bt(relay: LocalStack) -> Iterator[Any]:
    sandbox = relay.sandbox_batch
    sandbox.reset()
    sandbox.audiences.indexing_s = 1.0
    sandbox.audiences.max_ids = 4
    relay.set_queue_attributes("BatchQueue", VisibilityTimeout="2")
    quick = {"RELAY_RECONCILE_AFTER_S": "1", "BATCH_AUDIENCE_STALE_SENDING_S": "1"}
    with relay_env(**FAST, **quick):
        yield sandbox
    sandbox.reset()


def repairs_of(ddb: Any, execution_id: str) -> int:
    from relay.core.store import codec

    raw = ddb.get_item(
        TableName="RelayTable",
        Key={"pk": {"S": f"EXEC#{execution_id}"}, "sk": {"S": "META"}},
        ConsistentRead=True,
    )
    return int(codec.load(raw["Item"]).get("repairs", 0))


FULL = [("/audiences/update", 4), ("/audiences/update", 2), ("/audiences/replace", 2)]

# (failpoint, trouble set up first, the add's final status, Batch's accepted writes after the create)
WORKER_CRASHES = [
    # slot taken, nothing claimed: SQS redelivers the message, which makes the call.
    ("batch.audience.after_slot", None, "applied", FULL),
    # claimed, never called: Batch may look as if it had it; settled ambiguous, the audience released.
    ("batch.audience.after_claim", None, "ambiguous", [("/audiences/replace", 2)]),
    # called, the answer lost with the worker: ambiguous, never called again; the replace goes on.
    ("batch.audience.after_call", None, "ambiguous", [("/audiences/update", 4), ("/audiences/replace", 2)]),
    # a call recorded (the first of two): the redelivered message makes the second.
    ("batch.audience.after_record", None, "applied", FULL),
    # last call recorded, first poll queued, next write not woken: the redelivery wakes it.
    ("batch.audience.after_poll_enqueue", None, "applied", FULL),
    # a 429 recorded, its delayed message not sent: the redelivered message retries it.
    ("batch.audience.after_requeue", 429, "applied", FULL),
    # a 400 recorded `failed` (the audience released), next write not woken: the redelivery does.
    ("batch.audience.after_release", 400, "failed", [("/audiences/replace", 2)]),
    # a view answered, nothing recorded: the redelivered poll reads it again.
    ("batch.audience.poll.after_call", None, "applied", FULL),
    # the poll chain moved on, its next read not queued: the reconciler queues it.
    ("batch.audience.poll.after_advance", "slow indexing", "applied", FULL),
    # indexed and released (writes waiting for indexing), next write not woken: the reconciler.
    ("batch.audience.poll.after_terminal", "wait for indexing", "applied", FULL),
]


@pytest.mark.parametrize(("point", "trouble", "status", "writes"), WORKER_CRASHES)
def test_worker_crash_completes_or_ends_visibly_in_order(
    api: Api, bt: Any, point: str, trouble: Any, status: str, writes: list[tuple[str, int]]
) -> None:
    audience = name()
    assert api.wait(create(api, audience)["execution_id"], done, timeout=60)["status"] == "applied"
    env = {"BATCH_AUDIENCE_WAIT_FOR_INDEXING": "true"} if trouble == "wait for indexing" else {}
    if trouble == "slow indexing":
        bt.audiences.indexing_s = 2.5  # the first read (after 1 s) sees IN_PROGRESS and moves on
    elif isinstance(trouble, int):
        bt.fail_next(trouble, path="/audiences/update")
    with relay_env(**env):
        with crash_at(point):
            added = update(api, audience, [{"action": "add", "id": f"u{i}"} for i in range(6)])
            replaced = replace(api, audience, ["v1", "v2"])
        added_view = api.wait(added["execution_id"], done, timeout=90)
        replaced_view = api.wait(replaced["execution_id"], done, timeout=90)
    assert added_view["status"] == status, added_view
    assert replaced_view["status"] == "applied", replaced_view
    assert audience_writes(bt, audience)[1:] == writes
    assert sorted(bt.audiences.members(audience)) == ["v1", "v2"]
    if status == "ambiguous":
        assert added_view["audience"]["error_code"] == "send_interrupted"


# -- accept: ids stored, the write stored with its number, its message queued -------------------------


@pytest.mark.parametrize("point", ["batch.audience.accept.after_parts", "batch.audience.accept.after_store"])
def test_accept_crash_the_clients_retry_completes_the_write_once(api: Api, bt: Any, point: str) -> None:
    audience = name()
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    create(api, audience)
    ids = [{"action": "add", "id": f"u{i}"} for i in range(5)]
    with crash_at(point):
        assert update(api, audience, ids, expect=500, headers=key)
    retry = update(api, audience, ids, headers=key)  # the API client's retry
    assert retry["sequence"] == 2
    assert api.wait(retry["execution_id"], done, timeout=60)["status"] == "applied"
    assert audience_writes(bt, audience) == [
        ("/audiences/create", 0),
        ("/audiences/update", 4),
        ("/audiences/update", 1),
    ]


def test_accept_crash_with_no_retry_the_reconciler_queues_the_write(api: Api, bt: Any, ddb: Any) -> None:
    from relay.core.store import codec

    audience = name()
    with crash_at("batch.audience.accept.after_store"):
        assert create(api, audience, expect=500)
    [item] = wait_for(
        lambda: [
            codec.load(i)
            for i in scan_all(ddb)
            if i.get("audience", {}).get("S") == audience and i["sk"]["S"] == "META"
        ]
    )
    view = api.wait(item["execution_id"], done, timeout=60)
    assert view["status"] == "applied", view
    assert repairs_of(ddb, item["execution_id"]) == 1
    assert audience_writes(bt, audience) == [("/audiences/create", 0)]
