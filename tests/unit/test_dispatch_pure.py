"""The Optimized.app dispatcher's pure parts (pack, build_request, split_created) and status."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from relay.destinations.optimized.accept import estimate_done, lane_of
from relay.destinations.optimized.client import Created
from relay.destinations.optimized.dispatcher import MAX_EARLY_S, DispatchDeps, GroupDispatcher
from relay.destinations.optimized.executions import derive_status
from relay.destinations.optimized.models import BatchCreated, Schedule
from relay.destinations.optimized.packing import pack
from relay.destinations.optimized.requests import build_request, split_created
from relay.destinations.optimized.settings import OptimizedSettings as Settings
from relay.destinations.optimized.store import ClaimedBatch, PendingChunk

CAMPAIGN = "9e679c93-ff33-4b1e-bfad-1ac77afe1aef"
START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC).timestamp()


def chunk(
    seq: int, size: int, lane: str = "a", *, schedule: dict | None = None, start: int = 0
) -> PendingChunk:
    people = [
        {"index": start + i, "ref": f"r{start + i}", "person": {"phone_number": f"+35840{seq:03d}{i:04d}"}}
        for i in range(size)
    ]
    return PendingChunk(
        execution_id=f"e{seq}",
        seq=seq,
        group_id="g",
        lane=lane,
        size=size,
        created_at=float(seq),
        gsi2sk=f"{seq}",
        profiles=people,
        schedule=schedule,
    )


# -- pack --------------------------------------------------------------------------------------------


def test_pack_fills_the_oldest_lane_in_order() -> None:
    chunks = [chunk(0, 20), chunk(1, 10, "b"), chunk(2, 25), chunk(3, 5), chunk(4, 10)]
    batch, full = pack(chunks, 50)
    assert [c.seq for c in batch] == [0, 2, 3]  # 20 + 25 + 5; chunk 4 does not fit, b is another lane
    assert full is True  # the lane has more waiting


def test_pack_part_filled_is_not_full() -> None:
    batch, full = pack([chunk(0, 3), chunk(1, 4, "b")], 50)
    assert [c.seq for c in batch] == [0]
    assert full is False


def test_pack_exactly_full() -> None:
    batch, full = pack([chunk(0, 50), chunk(1, 50)], 50)
    assert [c.seq for c in batch] == [0]
    assert full is True
    assert sum(c.size for c in pack([chunk(i, 1) for i in range(60)], 50)[0]) == 50


# -- build_request -----------------------------------------------------------------------------------


def test_build_request_on_time_keeps_start_and_drops_our_fields() -> None:
    sched = {"campaign_uuid": CAMPAIGN, "start_at": START, "calls_per_minute": 12}
    chunks = [chunk(0, 2, schedule=sched), chunk(1, 1, schedule=sched)]
    request, shifted, start_at = build_request(chunks, START - 60)
    body = request.body()
    assert body["schedule"] == {
        "start_at": "2030-01-01 12:00:00",
        "campaign": {"uuid": CAMPAIGN},
        "calls_per_minute": 12,
    }
    assert shifted is False
    assert start_at == START
    wanted = [p["person"] for c in chunks for p in c.profiles]
    assert [p["person"] for p in body["profiles"]] == wanted
    assert all(set(p) == {"person"} for p in body["profiles"])


def test_build_request_late_start_is_shifted_to_now_rounded_up() -> None:
    sched = {"campaign_uuid": CAMPAIGN, "start_at": START, "calls_per_minute": None}
    request, shifted, start_at = build_request([chunk(0, 1, schedule=sched)], START + 10.3)
    assert shifted is True
    assert start_at == START + 11
    assert request.body()["schedule"] == {"start_at": "2030-01-01 12:00:11", "campaign": {"uuid": CAMPAIGN}}


def test_build_request_without_start_goes_now_and_is_not_shifted() -> None:
    sched = {"campaign_uuid": CAMPAIGN, "start_at": None}
    request, shifted, start_at = build_request([chunk(0, 1, schedule=sched)], START + 0.5)
    assert shifted is False
    assert start_at == START + 1
    assert request.body()["schedule"]["start_at"] == "2030-01-01 12:00:01"


def test_build_request_without_schedule() -> None:
    request, shifted, start_at = build_request([chunk(0, 2)], START)
    assert request.body() == {"profiles": [{"person": p["person"]} for p in chunk(0, 2).profiles]}
    assert (shifted, start_at) == (False, None)


# -- split_created -----------------------------------------------------------------------------------


def test_split_created_maps_upstream_profiles_back_in_order() -> None:
    chunks = [chunk(0, 2, start=0), chunk(1, 3, start=10)]
    created = BatchCreated.model_validate(
        {
            "uuid": "batch-1",
            "profiles": [{"uuid": f"u{i}", "external_id": f"x{i}"} for i in range(5)],
            "schedule": {"uuid": "sched-1"},
        }
    )
    results = split_created(ClaimedBatch("claim-1", chunks), Created(created), True, START, START + 1)
    assert [r.status for r in results] == ["sent", "sent"]
    assert [r.chunk.seq for r in results] == [0, 1]
    first, second = (json.loads(r.fields["upstream_profiles_json"]) for r in results)
    assert [(p["index"], p["ref"], p["uuid"]) for p in first] == [(0, "r0", "u0"), (1, "r1", "u1")]
    assert [(p["index"], p["uuid"], p["external_id"]) for p in second] == [
        (10, "u2", "x2"),
        (11, "u3", "x3"),
        (12, "u4", "x4"),
    ]
    for r in results:
        assert r.batch_id == "claim-1"
        assert r.fields["batch_uuid"] == "batch-1"
        assert r.fields["schedule_uuid"] == "sched-1"
        assert r.fields["start_shifted"] is True
        assert r.fields["sent_start_at"] == "2030-01-01T12:00:00.000Z"
        assert r.fields["sent_at"] == START + 1


def test_split_created_with_fewer_upstream_profiles_leaves_gaps() -> None:
    created = BatchCreated.model_validate({"uuid": "b", "profiles": [{"uuid": "u0"}]})
    [result] = split_created(ClaimedBatch("c", [chunk(0, 2)]), Created(created), False, None, START)
    refs = json.loads(result.fields["upstream_profiles_json"])
    assert [r["uuid"] for r in refs] == ["u0", None]
    assert result.fields["schedule_uuid"] is None
    assert result.fields["sent_start_at"] is None


# -- accept helpers ----------------------------------------------------------------------------------


def test_lane_separates_schedules() -> None:
    a = Schedule.model_validate({"campaign_uuid": CAMPAIGN, "start_at": "2030-01-01T12:00:00Z"})
    b = Schedule.model_validate({"campaign_uuid": CAMPAIGN, "start_at": "2030-01-01T13:00:00+01:00"})
    c = Schedule.model_validate(
        {"campaign_uuid": CAMPAIGN, "start_at": "2030-01-01T12:00:00Z", "calls_per_minute": 5}
    )
    assert lane_of(a) == lane_of(b)  # the same instant
    assert lane_of(a) != lane_of(c)
    assert lane_of(None) == "unscheduled"


def test_estimate_done() -> None:
    s = Settings(optimized_group_limit=3, optimized_group_window_s=2, optimized_window_margin_s=0.5)
    assert estimate_done(1, s, 100.0) == 100.0
    assert estimate_done(150, s, 100.0) == 100.0  # three batches: one window
    assert estimate_done(151, s, 100.0) == 102.5
    assert estimate_done(500, s, 100.0) == 100.0 + 3 * 2.5


# -- derive_status -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        ({}, "queued"),
        ({"chunks_cancelled": 1}, "queued"),
        ({"chunks_sent": 1}, "dispatching"),
        ({"chunks_sent": 3}, "completed"),
        ({"chunks_sent": 2, "chunks_failed": 1}, "partially_failed"),
        ({"chunks_sent": 2, "chunks_ambiguous": 1}, "partially_failed"),
        ({"chunks_failed": 2, "chunks_dead_lettered": 1}, "failed"),
        ({"chunks_cancelled": 3}, "cancelled"),
        ({"chunks_sent": 1, "chunks_cancelled": 2}, "partially_cancelled"),
        ({"chunks_failed": 1, "chunks_cancelled": 2}, "failed"),
    ],
)
def test_derive_status(counts: dict[str, int], status: str) -> None:
    assert derive_status({"chunks_total": 3, **counts}) == status


# -- waking up early enough to prepare a window's batches -------------------------------------------


class RecordingQueue:
    def __init__(self) -> None:
        self.wakes: list[dict] = []

    def wake(self, group_id: str, *, delay_s: float = 0, early_s: float = 0) -> None:
        self.wakes.append({"group_id": group_id, "delay_s": delay_s, "early_s": early_s})


class RecordingTable:
    """Records updates: enough for the wake-up's due time written before it is queued."""

    def __init__(self) -> None:
        self.updates: list[tuple[dict, str, dict]] = []

    def update(self, key: dict, expression: str, *, values: dict, **_: object) -> dict:
        self.updates.append((key, expression, values))
        return {}


def dispatcher(early_s: float = 0.0) -> tuple[GroupDispatcher, RecordingQueue, list[float]]:
    queue, slept = RecordingQueue(), []
    settings = Settings(dispatch_max_inline_wait_s=2.0, dispatch_wake_lead_s=1.0, optimized_api_token="t")
    deps = DispatchDeps(
        table=RecordingTable(),  # type: ignore[arg-type]
        queue=queue,  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]
        settings=settings,
        sleep=slept.append,
        clock=lambda: 1000.0,
    )
    return GroupDispatcher("g", deps, early_s=early_s), queue, slept


def test_a_short_wait_is_slept_a_long_one_is_a_delayed_wake_up() -> None:
    d, queue, slept = dispatcher()
    assert d._wait(1.5) is True
    assert slept == [1.5]
    assert d._wait(40.0) is False
    assert queue.wakes == [{"group_id": "g", "delay_s": 39, "early_s": 0.0}]
    # ... recorded as due before it was queued, so a lost one shows up overdue for the reconciler
    [(key, expression, values)] = d.deps.table.updates  # type: ignore[attr-defined]
    assert key == {"pk": "GROUP#g", "sk": "STATE"}
    assert "wake_due_at = :due" in expression
    assert values[":due"] == {"N": "1039.0"}


def test_the_wake_up_comes_early_by_what_preparing_the_last_round_took() -> None:
    d, queue, _ = dispatcher()
    d.prepare_s = 6.3  # reading, claiming and loading ten batches took that long
    d._wait(40.0)
    [wake] = queue.wakes
    assert wake["delay_s"] == 32  # floor(40 - 1 lead - 6.3)
    assert wake["early_s"] == pytest.approx(8.0)  # the woken dispatcher may wait that long for its slot


def test_how_early_is_bounded() -> None:
    d, queue, _ = dispatcher()
    d.prepare_s = 500.0
    d._wait(100.0)
    assert queue.wakes[0]["delay_s"] == 100 - 1 - MAX_EARLY_S
    assert dispatcher(early_s=10_000)[0].early_s == MAX_EARLY_S + 5.0


def test_the_early_allowance_never_outlasts_the_lambda() -> None:
    d, _, _ = dispatcher(early_s=10.0)
    s = d.deps.settings
    after_slot_s = s.dispatch_reserve_ms / 1000 + s.optimized_connect_timeout_s + s.optimized_read_timeout_s
    assert d._inline_wait_allowed(lambda: 60_000) == 10.0
    assert d._inline_wait_allowed(lambda: int((after_slot_s + 4) * 1000)) == pytest.approx(4.0)
    assert d._inline_wait_allowed(lambda: 1_000) == s.dispatch_max_inline_wait_s  # the usual wait stays
