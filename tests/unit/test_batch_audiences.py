"""Audiences without a network: splitting into calls, the stored parts, request validation, and
the per-audience sequence (accept order, no holes, Idempotency-Key retries) on in-process moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError
from relay.core.store import keys
from relay.core.store.table import Table
from relay.destinations.batch.audiences import split, store
from relay.destinations.batch.audiences.accept import AudienceAcceptDeps, accept_write
from relay.destinations.batch.audiences.models import AudienceCreate, IdsReplace, IdsUpdate
from relay.destinations.batch.settings import BatchSettings
from relay.executions.requests import IdempotencyConflict

NOW = 1_900_000_000.0


def apply(audience: dict[str, dict[str, Any]], path: str, body: dict[str, Any]) -> None:
    """What Batch documents for the calls, on a dict of id -> attributes."""
    if path == "/audiences/replace":
        audience.clear()
        for member in body["ids"]:
            audience[member["id"]] = member.get("attributes") or {}
    elif path == "/audiences/update":
        for change in body["ids"]:  # the last action per id wins
            if change["action"] == "add":
                audience[change["id"]] = change.get("attributes") or {}
            else:
                audience.pop(change["id"], None)


# -- splitting --------------------------------------------------------------------------------------


def test_an_update_is_split_in_order_and_the_last_action_per_id_still_wins() -> None:
    entries = [{"action": "add", "id": f"u{i % 700}", "attributes": {"n": i}} for i in range(2_500)]
    entries += [{"action": "remove", "id": f"u{i}"} for i in range(0, 700, 2)]
    calls = split.calls("update", "a1", entries, 1_000)
    assert [len(body["ids"]) for _, body in calls] == [1_000, 1_000, 850]
    assert {path for path, _ in calls} == {"/audiences/update"}
    assert [c for _, body in calls for c in body["ids"]] == entries
    result: dict[str, Any] = {}
    for path, body in calls:
        apply(result, path, body)
    expected: dict[str, Any] = {}
    apply(expected, "/audiences/update", {"ids": entries})
    assert result == expected
    assert len(result) == 350
    assert result["u1"] == {"n": 2_101}


def test_a_replace_replaces_with_its_first_call_and_adds_the_rest() -> None:
    entries = [{"id": f"u{i}", "attributes": {"n": i}} for i in range(25_000)]
    calls = split.calls("replace", "a1", entries, 10_000)
    assert [path for path, _ in calls] == ["/audiences/replace", "/audiences/update", "/audiences/update"]
    assert calls[0][1]["ids"][0] == {"id": "u0", "attributes": {"n": 0}}
    assert calls[1][1]["ids"][0] == {"action": "add", "id": "u10000", "attributes": {"n": 10_000}}
    audience = {"old": {}}
    for path, body in calls:
        apply(audience, path, body)
    assert len(audience) == 25_000
    assert "old" not in audience


def test_create_and_remove_are_one_call_each() -> None:
    assert split.call_request("create", "a1", 0, [], display_name="A one") == (
        "/audiences/create",
        {"name": "a1", "type": "custom_ids", "display_name": "A one"},
    )
    assert split.call_request("create", "a1", 0, []) == (
        "/audiences/create",
        {"name": "a1", "type": "custom_ids"},
    )
    assert split.call_request("remove", "a1", 0, []) == ("/audiences/remove", {"name": "a1"})
    assert split.calls_needed("create", 0, 10_000) == split.calls_needed("remove", 0, 10_000) == 1
    assert split.calls_needed("update", 10_000, 10_000) == 1
    assert split.calls_needed("update", 10_001, 10_000) == 2


def test_parts_hold_every_id_once_and_any_call_reads_back_from_them() -> None:
    entries = [{"action": "add", "id": f"user-{i:05d}", "attributes": {"score": i}} for i in range(3_000)]
    parts = split.parts(entries, max_bytes=5_000)
    assert len(parts) > 20
    assert all(len(text) <= 5_000 for _, text in parts)
    starts = [start for start, _ in parts]
    loaded = [(start, json.loads(text)) for start, text in parts]
    assert [e for _, part in loaded for e in part] == entries
    for n in range(split.calls_needed("update", len(entries), 700)):
        start, end = split.call_range(n, len(entries), 700)
        wanted = split.parts_for(starts, start, end)
        got = split.slice_parts([loaded[i] for i in wanted], start, end)
        assert got == entries[start:end]
    assert split.parts_for(starts, 0, 0) == []


# -- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "has space", "é", "a/b", "x" * 256, "semi;colon"])
def test_audience_names_outside_batchs_rule_are_refused(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AudienceCreate.model_validate({"name": name})
    assert refused.value.errors()[0]["loc"] == ("name",)


def test_audience_names_within_the_rule_are_kept_as_sent() -> None:
    assert AudienceCreate.model_validate({"name": "Vip_Users-2"}).name == "Vip_Users-2"
    assert AudienceCreate.model_validate({"name": "x" * 255}).name == "x" * 255


def test_ids_are_checked_with_the_field_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from relay.destinations.batch import settings

    monkeypatch.setenv("BATCH_MAX_CUSTOM_ID_LENGTH", "10")
    settings.get_settings.cache_clear()  # type: ignore[attr-defined]
    try:
        with pytest.raises(ValidationError) as refused:
            IdsUpdate.model_validate(
                {"ids": [{"action": "add", "id": "ok"}, {"action": "add", "id": "x" * 11}]}
            )
        assert refused.value.errors()[0]["loc"] == ("ids", 1, "id")
        assert "BATCH_MAX_CUSTOM_ID_LENGTH" in refused.value.errors()[0]["msg"]
    finally:
        settings.get_settings.cache_clear()  # type: ignore[attr-defined]
    bad = [
        {"ids": []},
        {"ids": [{"action": "upsert", "id": "a"}]},
        {"ids": [{"action": "add", "id": ""}]},
        {"ids": [{"action": "add"}]},
        {"ids": [{"action": "add", "id": "a", "extra": 1}]},
    ]
    for body in bad:
        with pytest.raises(ValidationError):
            IdsUpdate.model_validate(body)
    with pytest.raises(ValidationError):
        IdsReplace.model_validate({"ids": [{"action": "add", "id": "a"}]})
    assert IdsReplace.model_validate({"ids": [{"id": "a", "attributes": {"k": 1}}]}).ids[0].attributes == {
        "k": 1
    }


# -- the per-audience sequence ----------------------------------------------------------------------


class RecordingQueue:
    def __init__(self) -> None:
        self.writes: list[tuple[str, float]] = []
        self.polls: list[tuple[str, int, float]] = []

    def write(self, execution_id: str, *, delay_s: float = 0) -> None:
        self.writes.append((execution_id, delay_s))

    def poll(self, execution_id: str, *, attempt: int, delay_s: float) -> None:
        self.polls.append((execution_id, attempt, delay_s))


@pytest.fixture
def table() -> Iterator[Table]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="relay",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gsi2pk", "gsi2sk")
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": keys.WAITING_INDEX,
                    "KeySchema": [
                        {"AttributeName": "gsi2pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi2sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Table(ddb, "relay")


def accept_deps(table: Table, queue: RecordingQueue, **settings: Any) -> AudienceAcceptDeps:
    return AudienceAcceptDeps(
        table=table,
        queue=queue,  # type: ignore[arg-type]
        settings=BatchSettings(**settings),
        clock=lambda: NOW,
    )


def test_writes_take_the_audiences_next_number_and_every_number_names_its_write(table: Table) -> None:
    queue = RecordingQueue()
    deps = accept_deps(table, queue, batch_audience_ids_per_call=2)
    first = accept_write("create", "a1", execution_id="e1", request_hash="h1", caller="c", deps=deps)
    ids = [{"action": "add", "id": f"u{i}"} for i in range(5)]
    second = accept_write(
        "update", "a1", entries=ids, execution_id="e2", request_hash="h2", caller="c", deps=deps
    )
    other = accept_write("create", "b1", execution_id="e3", request_hash="h3", caller="c", deps=deps)
    assert (first.sequence, second.sequence, other.sequence) == (1, 2, 1)
    assert (second.ids, second.calls, second.status) == (5, 3, "queued")
    sequence = store.sequence(table, "a1")
    assert (sequence["accepted"], sequence["released"]) == (2, 0)
    assert table.get(keys.audience_write("a1", 2))["execution_id"] == "e2"
    assert [w for w, _ in queue.writes] == ["e1", "e2", "e3"]
    item = store.get(table, "e2")
    assert item["status"] == "queued"
    assert item["destination"] == "batch"
    assert [store.entries_of_call(table, item, n, 2) for n in range(3)] == [ids[0:2], ids[2:4], ids[4:5]]


def test_a_retry_with_the_same_key_answers_the_first_write_and_another_body_conflicts(table: Table) -> None:
    queue = RecordingQueue()
    deps = accept_deps(table, queue)
    ids = [{"action": "add", "id": "u1"}]
    first = accept_write(
        "update", "a1", entries=ids, execution_id="e1", request_hash="h", caller="c", deps=deps
    )
    again = accept_write(
        "update", "a1", entries=ids, execution_id="e1", request_hash="h", caller="c", deps=deps
    )
    assert again == first
    assert store.sequence(table, "a1")["accepted"] == 1  # no second number, no hole
    # It never left its accept: the retry queues it again (the first message may be lost).
    assert [w for w, _ in queue.writes] == ["e1", "e1"]
    with pytest.raises(IdempotencyConflict):
        accept_write(
            "update", "a1", entries=ids, execution_id="e1", request_hash="other", caller="c", deps=deps
        )


def test_concurrent_accepts_each_get_their_own_number(table: Table, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two accepts read the same count; the second's transaction fails its condition and takes the
    next number, so the sequence has no hole and no duplicate."""
    queue = RecordingQueue()
    deps = accept_deps(table, queue)
    real = store.sequence
    raced = {"done": False}

    def stale_once(t: Table, name: str) -> dict[str, Any]:
        seen = real(t, name)
        if not raced["done"]:
            raced["done"] = True
            accept_write("remove", name, execution_id="racer", request_hash="r", caller="c", deps=deps)
        return seen

    monkeypatch.setattr(store, "sequence", stale_once)
    answer = accept_write("create", "a1", execution_id="e1", request_hash="h", caller="c", deps=deps)
    monkeypatch.setattr(store, "sequence", real)
    assert answer.sequence == 2
    assert store.get(table, "racer")["seq"] == 1
    assert [table.get(keys.audience_write("a1", n))["execution_id"] for n in (1, 2)] == ["racer", "e1"]


# -- the project limiter: a slot held until its call is answered -------------------------------------


def test_a_slot_held_until_answered_spaces_calls_a_second_after_the_answer(table: Table) -> None:
    from relay.core.limiter import per_second

    now = [100.0]
    limiter = per_second(table, "project", 1, unsettled_max_s=20, clock=lambda: now[0], sleep=lambda s: None)
    first = limiter.acquire_until_answered(0)
    assert first == 100.0
    now[0] = 101.5  # the call is still out: its slot counts as happening now
    assert limiter.acquire_until_answered(0) is None
    limiter.answered(first, 101.6)  # Batch answered late: the next call a second after that
    now[0] = 102.5
    assert limiter.acquire_until_answered(0) is None
    now[0] = 102.6
    second = limiter.acquire_until_answered(0)
    assert second == 102.6
    limiter.answered(second, None)  # never sent: given back at once
    assert limiter.acquire_until_answered(0) == 102.6
    now[0] = 130.0  # a caller that died mid-call frees its slot after unsettled_max_s
    assert limiter.acquire_until_answered(0) == 130.0


def test_an_id_too_large_for_one_stored_item_is_a_413_and_nothing_is_stored(table: Table) -> None:
    from relay.core.http import ApiError

    queue = RecordingQueue()
    deps = accept_deps(table, queue)
    ids = [
        {"action": "add", "id": "ok"},
        {"action": "add", "id": "big", "attributes": {"blob": "x" * 300_001}},
    ]
    with pytest.raises(ApiError) as refused:
        accept_write("update", "a1", entries=ids, execution_id="e1", request_hash="h", caller="c", deps=deps)
    assert refused.value.status == 413
    assert refused.value.code == "id_too_large"
    assert refused.value.message.startswith("ids[1] is 300,")
    assert store.get(table, "e1") is None
    assert store.sequence(table, "a1")["accepted"] == 0
    assert queue.writes == []
