"""make dev's logs: a trigger shows as short lines attributed to api and dispatch in the terminal,
and every line the functions printed is in the log file as JSON, metric documents only there."""

from __future__ import annotations

import json
import re
import uuid

import httpx
from conftest import DevStack, wait_for

SHORT_LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<function>[a-z]+)\s+(?P<execution>\S+…)?\s*(?P<what>.+)$")


def file_records(stack: DevStack) -> list[dict]:
    return [json.loads(line) for line in stack.LOG_FILE.read_text().splitlines() if line.strip()]


def test_a_trigger_reads_as_short_lines_and_its_json_is_in_the_file(dev_stack: DevStack) -> None:
    start = dev_stack.mark()
    group = str(uuid.uuid4())
    answer = httpx.post(
        f"{dev_stack.url}/v1/optimized/triggers",
        headers={"Authorization": f"Bearer {dev_stack.key}"},
        json={"group_id": group, "profiles": [{"person": {"phone_number": "+35840123456"}}]},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    execution = answer.json()["execution_id"]

    def shown() -> list[re.Match]:
        return [m for line in dev_stack.output(start).splitlines() if (m := SHORT_LINE.match(line))]

    def sent() -> bool:
        return any(m["function"] == "dispatch" and m["what"].startswith("batch sent") for m in shown())

    wait_for(sent, timeout=30, what="make dev to show the batch sent")
    accepted = [m for m in shown() if m["function"] == "api" and "trigger accepted" in m["what"]]
    assert len(accepted) == 1, dev_stack.output(start)
    assert accepted[0]["execution"] == execution[:8] + "…"
    assert f"group={group[:8]}…" in accepted[0]["what"]
    batch = next(m for m in shown() if m["function"] == "dispatch" and m["what"].startswith("batch sent"))
    assert f"group={group[:8]}…" in batch["what"]

    # The file: the same events in full, each attributed to its function.
    records = wait_for(
        lambda: [r for r in file_records(dev_stack) if r.get("group_id") == group] or None,
        timeout=10,
        what="the log file to have the trigger's records",
    )
    by_message = {(r["function"], r.get("message")): r for r in records}
    assert by_message[("api", "trigger accepted")]["execution_id"] == execution
    assert by_message[("dispatch", "batch sent")]["profiles"] == 1
    assert by_message[("dispatch", "batch sent")]["function_name"] == "DispatchFunction"


def test_metric_documents_go_only_to_the_file(dev_stack: DevStack) -> None:
    """The reconciler's ``Repairs: 0`` on every run (here every few seconds) never reaches the
    terminal; the file has it, attributed to the reconciler."""
    start = dev_stack.mark()

    def reconciler_metrics() -> list[dict]:
        return [r for r in file_records(dev_stack) if r["function"] == "reconciler" and "Repairs" in r]

    before = len(reconciler_metrics())
    wait_for(lambda: len(reconciler_metrics()) > before, timeout=60, what="a reconciler run")
    terminal = dev_stack.output(start)
    assert "Repairs" not in terminal
    assert '"_aws"' not in terminal
    assert "No application metrics to publish" not in terminal
    assert all(r["_aws"]["CloudWatchMetrics"] for r in reconciler_metrics())


def test_a_refused_request_shows_what_was_wrong(dev_stack: DevStack) -> None:
    """The api function logs what it accepts; the local gateway adds a line for each refusal."""
    start = dev_stack.mark()
    answer = httpx.post(
        f"{dev_stack.url}/v1/optimized/triggers",
        headers={"Authorization": f"Bearer {dev_stack.key}"},
        json={"group_id": "not-a-uuid", "profiles": [{"person": {"phone_number": "+35840123456"}}]},
        timeout=30,
    )
    assert answer.status_code == 422, answer.text

    def refusal() -> list[str]:
        return [line for line in dev_stack.output(start).splitlines() if " answered 422" in line]

    [line] = wait_for(refusal, timeout=10, what="make dev to show the refusal")
    match = SHORT_LINE.match(line)
    assert match is not None, line
    assert match["function"] == "gateway"
    assert match["what"].startswith("POST /v1/optimized/triggers answered 422 ")
    assert ": group_id: " in match["what"]  # the error's code, then each field and what is wrong
