"""Optimove's worker sizing and crash bookkeeping, without AWS: each SQS-fed function's Timeout
holds a batch of its slowest records and each queue's visibility is six times the timeout of the
function that reads it (loss path 8); a run's next step is findable on gsi2 until it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from relay.core.store import keys
from relay.destinations.optimove import store
from relay.destinations.optimove.accept import never_left_accept
from relay.destinations.optimove.settings import OptimoveSettings
from relay_local.pollers import sqs_mappings
from relay_local.template import load_template

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
GLOBAL_TIMEOUT = TEMPLATE["Globals"]["Function"].get("Timeout", 3)


def timeout_of(function_id: str) -> float:
    return float(TEMPLATE["Resources"][function_id]["Properties"].get("Timeout", GLOBAL_TIMEOUT))


@pytest.mark.parametrize("mapping", sqs_mappings(TEMPLATE), ids=lambda m: f"{m.function_id}.{m.event_name}")
def test_every_queue_is_visible_again_only_after_six_timeouts_of_its_reader(mapping: Any) -> None:
    visibility = TEMPLATE["Resources"][mapping.queue_logical_id]["Properties"]["VisibilityTimeout"]
    assert visibility >= 6 * timeout_of(mapping.function_id), mapping


@pytest.mark.parametrize(
    ("function_id", "event"), [("DispatchFunction", "OptimoveRuns"), ("PollFunction", "StatusChecks")]
)
def test_optimove_batches_fit_their_function_at_the_slowest_record(function_id: str, event: str) -> None:
    [mapping] = [m for m in sqs_mappings(TEMPLATE) if (m.function_id, m.event_name) == (function_id, event)]
    budget_s = OptimoveSettings().record_budget_ms() / 1000
    assert budget_s >= 2 * 1.0 + 3.0 + 10.0  # two slot waits and the call's connect + read timeouts
    assert mapping.batch_size * budget_s <= timeout_of(function_id), (mapping.batch_size, budget_s)


def test_a_run_under_way_is_on_gsi2_by_its_due_time_and_leaves_it_when_finished() -> None:
    entry = store.due_keys("e-1", 1_800_000_000.0)
    assert entry["gsi2pk"] == keys.due_partition("optimove", "e-1") == f"DUE#optimove#{keys.shard_of('e-1')}"
    assert entry["gsi2pk"] in keys.due_partitions("optimove")  # spread over shards, all read
    assert entry["gsi2sk"].startswith("2027-01-15T08:00:00.000Z#e-1")
    assert entry["due_at"] == 1_800_000_000.0
    # Sort keys order by due time: the reconciler reads a prefix of the partition.
    assert store.due_keys("z", 1.0)["gsi2sk"] < store.due_keys("a", 2.0)["gsi2sk"]


def test_only_a_run_the_accept_queued_and_nothing_since_is_queued_again_by_a_retry() -> None:
    assert never_left_accept({"status": "queued", "transitions": [{"status": "queued"}]})
    backoff = {
        "status": "queued",
        "transitions": [{"status": "queued"}, {"status": "sending"}, {"status": "queued"}],
    }
    assert not never_left_accept(backoff)  # its retry waits for its back-off / Retry-After
    assert not never_left_accept({"status": "scheduled", "transitions": [{"status": "scheduled"}]})
    assert not never_left_accept({"status": "published", "transitions": [{"status": "queued"}]})
