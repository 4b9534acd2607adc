"""The `relay` command against the local stack, run as an operator runs it: the console script in a
process of its own, finding the stack through the file the local stack writes (no flags)."""

from __future__ import annotations

import csv
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import CAMPAIGN, REPO, Api, batches_for, relay_env
from relay_local.stack import LocalStack
from relay_ops import target

RELAY = [sys.executable, "-m", "relay_ops.cli"]
FUTURE = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86_400))


@pytest.fixture
def state(relay: LocalStack, tmp_path: Path) -> Path:
    """The file `make dev` writes, for this test's stack."""
    path = tmp_path / "relay-local.json"
    target.write_state(
        path,
        api_url=relay.api_url,
        api_key=relay.api_key,
        environment=relay.operator_environment(),
        webhook_secret=os.environ.get("WEBHOOK_SECRET"),
    )
    return path


def run(state: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`relay ARGS` as a user's shell runs it: none of the stack's settings in its environment,
    only where the local stack's file is."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("AWS_", "RELAY_")) or target.is_resource_variable(k) or k == "WEBHOOK_SECRET")
    }
    env[target.STATE_FILE_ENV] = str(state)
    return subprocess.run(
        [*RELAY, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def profiles_csv(path: Path, count: int) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["first_name", "last_name", "phone_number", "email_address", "ref", "CustomerType"])
        for i in range(count):
            writer.writerow([f"P{i}", "Doe", f"+3584{i:08d}", "", f"crm-{i}", "New"])
    return path


def sent_profiles(relay: LocalStack, group: str) -> list[dict[str, Any]]:
    return [p for b in batches_for(relay, group, 201) for p in b.profiles]


# --- trigger + watch ------------------------------------------------------------------------------


def test_a_csv_goes_out_in_chunks_with_person_ref_and_attributes_and_watch_follows_it_to_the_end(
    relay: LocalStack, api: Api, state: Path, group: str, tmp_path: Path
) -> None:
    people = profiles_csv(tmp_path / "profiles.csv", 120)
    done = run(
        state,
        "trigger", "optimized", "--csv", str(people), "--group", group, "--campaign", CAMPAIGN,
        "--start-at", FUTURE, "--chunk-size", "50", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [e["rows"] for e in report["executions"]] == ["1-50", "51-100", "101-120"]
    assert (report["rows"], report["accepted_rows"], report["refused"]) == (120, 120, [])

    last = report["executions"][-1]["execution_id"]
    watched = run(state, "watch", last, "--interval", "0.1")
    assert watched.returncode == 0, watched.stderr
    # Sent and scheduled upstream for its start_at: done on the relay's side ("scheduled" once the
    # statuses say so, "completed" before).
    assert re.search(rf"^{last}: (completed|scheduled) ·", watched.stdout, re.M), watched.stdout
    assert "chunks" in watched.stderr  # the progress bar

    for entry in report["executions"]:
        api.wait(entry["execution_id"])
    sent = sent_profiles(relay, group)
    assert len(sent) == 120
    first = next(p for p in sent if p["person"]["phone_number"] == "+358400000000")
    assert first["person"] == {"first_name": "P0", "last_name": "Doe", "phone_number": "+358400000000"}
    assert {"name": "CustomerType", "value": "New"} in first["attributes"]
    view = api.execution(report["executions"][0]["execution_id"])
    assert view["schedule"]["campaign_uuid"] == CAMPAIGN


class Outage:
    """A proxy to the relay's API that goes down after forwarding ``forward`` requests, the last
    of them unanswered (the relay took it; the caller never hears back): a stack stopped mid-import."""

    def __init__(self, upstream: str, forward: int) -> None:
        self.upstream, self.forward, self.seen = upstream, forward, 0
        outage = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outage.seen += 1
                if outage.seen > outage.forward:
                    self.close_connection = True  # down: nothing answers
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                answer = httpx.post(outage.upstream + self.path, content=body, headers=headers, timeout=30)
                if outage.seen == outage.forward:
                    self.close_connection = True  # accepted upstream, the answer lost
                    return
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Outage:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_import_interrupted_mid_way_resumes_on_a_rerun_and_sends_no_profile_twice(
    relay: LocalStack, api: Api, state: Path, group: str, tmp_path: Path
) -> None:
    people = profiles_csv(tmp_path / "profiles.csv", 250)
    command = ["trigger", "optimized", "--csv", str(people), "--group", group, "--chunk-size", "50"]
    # Chunks 1 and 2 reach the relay, the answer to 2 is lost, then the relay is gone.
    with Outage(relay.api_url, forward=2) as outage:
        first = run(state, "--api-url", outage.url, *command, "--retries", "1", "--json")
    assert first.returncode == 1
    report = json.loads(first.stdout)
    assert [e["rows"] for e in report["executions"]] == ["1-50"]
    assert "stopped at rows 51-100" in first.stderr
    assert "resume" in first.stderr
    assert "Traceback" not in first.stderr

    again = run(state, *command, "--json")
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert [e["rows"] for e in resumed["executions"]] == ["1-50", "51-100", "101-150", "151-200", "201-250"]
    # The chunk that reached the relay before is the same execution, not a second one.
    assert resumed["executions"][0]["execution_id"] == report["executions"][0]["execution_id"]
    for entry in resumed["executions"]:
        api.wait(entry["execution_id"])
    phones = sorted(p["person"]["phone_number"] for p in sent_profiles(relay, group))
    assert phones == sorted(f"+3584{i:08d}" for i in range(250))  # each once


# --- executions, show, cancel, schedules, status --------------------------------------------------


def test_executions_show_cancel_and_status_show_what_the_relay_holds(
    relay: LocalStack, api: Api, state: Path, group: str
) -> None:
    # 40 chunks against 3 sends per 2 s: most of them wait for half a minute.
    answer = api.trigger(group, 2000).json()
    execution_id = answer["execution_id"]

    status = run(state, "status", "--json")
    assert status.returncode == 0, status.stderr
    seen = json.loads(status.stdout)
    optimized = next(d for d in seen["destinations"] if d["destination"] == "optimized")
    [waiting] = [w for w in optimized["waiting"] if w["key"] == group]
    assert 0 < waiting["count"] <= 2000
    [window] = [limit for limit in optimized["limiters"] if limit["name"] == f"group {group}"]
    assert window["limit"] == 3
    assert 0 <= window["used"] <= 3  # never more than the limit in the window that ends now
    queues = {(q["queue"], q["dead_letter"]) for q in seen["queues"]}
    assert {("dispatch", False), ("dispatch", True), ("results", True), ("optimove", True)} <= queues
    table = run(state, "status")
    assert "profiles pending" in table.stdout
    assert group in table.stdout

    listed = run(state, "executions", "--json")
    assert listed.returncode == 0, listed.stderr
    assert execution_id in {e["execution_id"] for e in json.loads(listed.stdout)}
    finished = run(state, "executions", "--status", "completed", "--json")
    assert execution_id not in {e["execution_id"] for e in json.loads(finished.stdout)}

    cancelled = run(state, "cancel", execution_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["chunks"]["cancelled"] > 0
    shown = run(state, "show", execution_id)
    assert shown.returncode == 0, shown.stderr
    assert execution_id in shown.stdout
    assert "cancelled" in shown.stdout


def test_optimove_rows_are_runs_and_the_scheduled_ones_are_listed(
    relay: LocalStack, state: Path, tmp_path: Path
) -> None:
    contexts = tmp_path / "contexts.csv"
    contexts.write_text(
        "match_id,match_name,send_at,dedupe_key\n"
        f"m-1,Arsenal vs Chelsea,{FUTURE},m-1-start\n"
        f"m-2,Spurs vs Leeds,{FUTURE},m-2-start\n"
    )
    args = ["trigger", "optimove", "--csv", str(contexts), "--event-generator", "gen-1", "--topic", "t-1"]
    done = run(state, *args, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [e["status"] for e in report["executions"]] == ["scheduled", "scheduled"]

    scheduled = run(state, "schedules", "--json")
    assert scheduled.returncode == 0, scheduled.stderr
    listed = {i["execution_id"]: i for i in json.loads(scheduled.stdout)}
    assert {e["execution_id"] for e in report["executions"]} <= set(listed)

    # No generator anywhere: said before anything is sent.
    bare = tmp_path / "bare.csv"
    bare.write_text("match_id\nm-3\n")
    refused = run(state, "trigger", "optimove", "--csv", str(bare))
    assert refused.returncode == 1
    assert "no event_generator_id column: give --event-generator" in refused.stderr


# --- errors, dead letters, signed webhooks --------------------------------------------------------


def test_errors_are_the_relays_message_and_a_non_zero_exit(
    relay: LocalStack, api: Api, state: Path, tmp_path: Path, group: str
) -> None:
    done = api.wait(api.trigger(group, 1).json()["execution_id"])
    too_late = run(state, "cancel", done["execution_id"])
    assert too_late.returncode == 1
    assert "(409 not_cancellable)" in too_late.stderr
    wrong_key = run(state, "--api-key", "nope", "executions")
    assert wrong_key.returncode == 1
    assert "API key" in wrong_key.stderr
    assert "401" in wrong_key.stderr
    missing = run(state, "show", "no-such-execution")
    assert (missing.returncode, "No execution no-such-execution" in missing.stderr) == (1, True)
    nowhere = run(tmp_path / "no-stack.json", "status")
    assert nowhere.returncode == 1
    assert "no relay found: start the local stack (make dev)" in nowhere.stderr
    bad_rows = tmp_path / "bad.csv"
    bad_rows.write_text("first_name,phone_number\nJane,+3584000000001\nJoe,not-a-number\n")
    refused = run(
        state,
        "trigger",
        "optimized",
        "--csv",
        str(bad_rows),
        "--group",
        "cc6cdf44-acf4-4b39-bd17-55b70b769812",
    )
    assert refused.returncode == 1
    assert "row 2: person.phone_number" in refused.stdout
    for answer in (too_late, wrong_key, missing, nowhere, refused):
        assert "Traceback" not in answer.stderr


def test_dlq_and_sign_work_under_relay_and_under_their_old_names(relay: LocalStack, tmp_path: Path) -> None:
    secret = "whsec_" + "c2VjcmV0LWZvci10aGUtY2xpLXRlc3Q="
    with relay_env(WEBHOOK_SECRET=secret):
        state = tmp_path / "relay-local.json"
        target.write_state(
            state,
            api_url=relay.api_url,
            api_key=relay.api_key,
            environment=relay.operator_environment(),
            webhook_secret=secret,
        )
        listed = run(state, "dlq", "list")
        assert listed.returncode == 0, listed.stderr
        assert "dispatch: 0 message(s)" in listed.stdout
        assert "results: 0 message(s)" in listed.stdout

        event = tmp_path / "event.json"
        sample = json.loads((REPO / "events" / "webhook-optimized-sms-delivered.json").read_text())
        event.write_text(json.dumps({**sample, "id": "evt-cli-1"}))
        sent = run(state, "sign", str(event), "--send")
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["accepted"] == 1
        forged = run(state, "sign", str(event), "--send", "--secret", "whsec_" + "d3Jvbmc=")
        assert forged.returncode == 1
        assert "Traceback" not in forged.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env[target.STATE_FILE_ENV] = str(state)
    bin_dir = Path(sys.executable).parent
    old = subprocess.run(
        [str(bin_dir / "relay-dlq"), "list", "--queue", "dispatch"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert old.returncode == 0, old.stderr
    assert old.stdout.strip().splitlines()[-1] == "dispatch: 0 message(s)"
    curl = subprocess.run(
        [str(bin_dir / "relay-sign"), str(event), "--secret", secret],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert curl.returncode == 0
    assert curl.stdout.startswith("curl -s -X POST")


def test_make_devs_file_is_written_while_it_runs_and_removed_when_it_stops(tmp_path: Path) -> None:
    """`make dev` (relay-local) itself: the command finds it with no flags, then forgets it."""
    state = tmp_path / "relay-local.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RELAY_"))}
    env.update(
        {target.STATE_FILE_ENV: str(state), "RELAY_LOCAL_PORT": "0", "RELAY_LOCAL_MAX_CONCURRENCY": "1"}
    )
    dev = subprocess.Popen(
        [sys.executable, "-m", "relay_local"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 90
        while not state.exists():
            assert dev.poll() is None, "make dev ended"
            assert time.monotonic() < deadline, "make dev wrote no file"
            time.sleep(0.2)
        assert state.stat().st_mode & 0o077 == 0  # it holds the API key: the user's only
        status = run(state, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert {d["destination"] for d in json.loads(status.stdout)["destinations"]} >= {
            "optimized",
            "optimove",
        }
    finally:
        dev.terminate()
        assert dev.wait(timeout=60) == 0
    assert not state.exists()


def test_batch_operations_from_csv_and_jsonl_are_sent_once_even_when_the_import_is_run_again(
    relay: LocalStack, state: Path, tmp_path: Path
) -> None:
    operations = tmp_path / "operations.csv"
    operations.write_text("custom_id,ref,plan\n" + "".join(f"u-{i},crm-{i},pro\n" for i in range(30)))
    command = ["trigger", "batch", "--csv", str(operations), "--chunk-size", "10", "--json"]
    done = run(state, *command)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [e["rows"] for e in report["executions"]] == ["1-10", "11-20", "21-30"]
    for entry in report["executions"]:
        watched = run(state, "watch", entry["execution_id"], "--interval", "0.1", "--timeout", "60")
        assert watched.returncode == 0, watched.stderr + watched.stdout
    assert relay.sandbox_batch.profiles["custom_id:u-7"]["attributes"] == {"plan": "pro"}
    status = json.loads(run(state, "status", "--json").stdout)
    batch = next(d for d in status["destinations"] if d["destination"] == "batch")
    assert all(w["count"] == 0 for w in batch["waiting"])  # all of it sent
    assert all(limit["used"] <= limit["limit"] for limit in batch["limiters"])
    assert {("batch", False), ("batch", True)} <= {(q["queue"], q["dead_letter"]) for q in status["queues"]}

    again = run(state, *command)
    assert again.returncode == 0, again.stderr
    assert [e["execution_id"] for e in json.loads(again.stdout)["executions"]] == [
        e["execution_id"] for e in report["executions"]
    ]
    lines = tmp_path / "operations.jsonl"
    lines.write_text(
        json.dumps({"identifiers": {"custom_id": "u-100"}, "events": [{"name": "e_signup"}]})
        + "\n"
        + json.dumps({"identifiers": {"installation": "inst-1"}, "attributes": {"plan": "free"}})
        + "\n"
    )
    from_jsonl = run(state, "trigger", "batch", "--jsonl", str(lines), "--json")
    assert from_jsonl.returncode == 0, from_jsonl.stderr
    [entry] = json.loads(from_jsonl.stdout)["executions"]
    assert run(state, "watch", entry["execution_id"], "--interval", "0.1", "--timeout", "60").returncode == 0
    assert sum(c.operations for c in relay.sandbox_batch.profile_calls()) == 32  # each operation once
